"""tools.tpm_broker: two TPM clients at once on one swtpm, through tpm2-abrmd.

swtpm alone serves one connection at a time; through the broker, one client extends a PCR
while another holds its own context open and reads the result, which is what the IMA
end-to-end test needs (the agent quotes while the IMA emulator extends PCR 10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tpm2_pytss import ESAPI, ESYS_TR, TPML_DIGEST_VALUES, TPMT_HA

from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops
from tools.swtpm import Swtpm
from tools.tpm_broker import BUS_ENV, TpmBroker, TpmBrokerError

pytestmark = pytest.mark.swtpm

PCR = 16  # the debug PCR: resettable, used by nothing else here
DATA = b"limelet: broker test"


@pytest.fixture
def broker(swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TpmBroker]:
    with TpmBroker(swtpm.tcti, tmp_path / "broker") as running:
        # The tabrmd TCTI, loaded in this process, finds the bus in its environment.
        monkeypatch.setenv(BUS_ENV, running.bus_address)
        yield running


def extend_sha256(esys: ESAPI, pcr: int, digest: bytes) -> None:
    value = TPMT_HA.unmarshal(int(TpmAlg.SHA256).to_bytes(2, "big") + digest)[0]
    esys.pcr_extend(ESYS_TR.PCR0 + pcr, TPML_DIGEST_VALUES([value]))


def test_two_contexts_at_once(broker: TpmBroker) -> None:
    first, vendor = esys_ops.open_esapi(broker.tcti)
    try:
        # The first context stays open while the second opens: swtpm alone would not accept.
        second, _ = esys_ops.open_esapi(broker.tcti)
        try:
            before = esys_ops.pcr_read(first, TpmAlg.SHA256, [PCR])[PCR]
            digest = hashlib.sha256(DATA).digest()
            extend_sha256(second, PCR, digest)
            after = esys_ops.pcr_read(first, TpmAlg.SHA256, [PCR])[PCR]
        finally:
            second.close()
        assert first.get_random(8) != first.get_random(8)
    finally:
        first.close()
    assert vendor.startswith("SW")
    assert after == hashlib.sha256(before + digest).digest()
    assert after != before


def test_stop_is_complete_and_idempotent(swtpm: Swtpm, tmp_path: Path) -> None:
    broker = TpmBroker(swtpm.tcti, tmp_path / "broker").start()
    broker.stop()
    broker.stop()
    # abrmd let go of swtpm's one connection: a direct client gets it.
    esys, _ = esys_ops.open_esapi(swtpm.tcti)
    esys.close()


def test_abrmd_failure_is_reported(tmp_path: Path) -> None:
    # Nothing listens on port 1: abrmd cannot reach a TPM and says why.
    broker = TpmBroker("swtpm:host=127.0.0.1,port=1", tmp_path / "broker")
    with pytest.raises(TpmBrokerError, match="failed to create TCTI"):
        broker.start()
