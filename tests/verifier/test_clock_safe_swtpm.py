"""Keylime's clock rules on honest swtpm quotes: a TPM restarted without an orderly
TPM2_Shutdown reports TPMS_CLOCK_INFO.safe = NO (Part 1, "Clock" and "TPM Reset": Clock may
have lost time, so a larger value may already have been reported), and the verifier rejects
the quote, as Keylime 7.14.3's check_quote_timing does (keylime/tpm/tpm_main.py).

swtpm is stopped with SIGTERM and nothing sends TPM2_Shutdown, which is what a power cut
looks like to the TPM; it then starts with ``startup-clear`` on the same state.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.attest import ClockInfo, parse_tpms_attest
from edge_agent.tpm.pytss_backend import PytssTpm
from tests.swtpm.support import config as tpm_config
from tools.swtpm import Swtpm, SwtpmState
from verifier_lite.checks import CheckInput, CheckResult, Evidence, check_evidence

pytestmark = pytest.mark.swtpm

NONCE = "c7Rk2WqLx9Tn4VbZp8Hs"
MASK = 1 << 16


async def quote_once(tcti: str, ak_dir: Path) -> tuple[Evidence, CheckInput, ClockInfo]:
    tpm = await PytssTpm.open(tpm_config(tcti, ak_dir))
    try:
        ak = await tpm.ak()  # made on the first start, loaded from ak_dir on the second
        quote = await tpm.quote(NONCE.encode(), MASK, ak.hash_alg)
    finally:
        await tpm.aclose()
    evidence = Evidence(quote.encode(), ak.hash_alg, "rsa", ak.signing_alg, None, 1, None, 0, None)
    check = CheckInput(
        ak_tpm_b64=base64.b64encode(ak.public).decode(),
        nonce=NONCE.encode(),
        accept_hash_algs=("sha256",),
        accept_enc_algs=("rsa",),
        accept_sign_algs=(ak.signing_alg,),
        tpm_policy={},
        public_key_pem=None,
        previous_clock=None,
        runtime_policy=None,
        ima_state=None,
        boottime=1,
    )
    clock = parse_tpms_attest(KeylimeQuote.parse(quote.encode()).attest).clock_info
    return evidence, check, clock


def ids(result: CheckResult) -> list[str]:
    return [f.event_id for f in result.failures]


async def test_quote_after_unclean_restart_is_rejected_for_safe_no(
    swtpm_template: SwtpmState, tmp_path: Path
) -> None:
    ak_dir = tmp_path / "ak"
    with Swtpm(swtpm_template, tmp_path / "swtpm") as first:
        evidence, check, clock = await quote_once(first.tcti, ak_dir)
        state = first.state
    assert clock.safe
    assert ids(check_evidence(check, evidence)) == []

    with Swtpm(state, tmp_path / "swtpm", copy=False) as again:
        evidence, check, after = await quote_once(again.tcti, ak_dir)
    assert not after.safe
    assert after.reset_count > clock.reset_count  # a TPM Reset, so not a clock comparison
    result = check_evidence(check, evidence)
    assert ids(result) == ["qoute_validation.quote_validation"]
    assert "safe" in json.loads(result.failures[0].context)["data"]
    assert not result.failures[0].recoverable
