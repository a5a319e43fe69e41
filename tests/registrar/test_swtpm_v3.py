"""A real TPM (swtpm) enrols over API 3.0: ``POST /v3.0/agents`` with the id in the body, the
blob opened by TPM2_ActivateCredential, then ``POST /v3.0/agents/{id}/activate``.

The registrar trusts swtpm's local CA, so the EK certificate chain is checked as on 2.x.  A
wrong auth tag made from the right challenge for another id is refused and removes the
pending record (Keylime's rule); the EK certificate sent as PEM (what rust-keylime sends,
PROTOCOL.md section 1) is accepted.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from registrar_lite.server import serve_registrar
from registrar_lite.service import expected_auth_tag
from tests.cv_ca import TlsFiles
from tests.registrar.support import RunningRegistrar, b64, registrar_config
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AGENT_ID = "swtpm-v3"


async def _start(
    nursery: trio.Nursery, tls: TlsFiles, tmp_path: Path, swtpm: Swtpm
) -> RunningRegistrar:
    store = tmp_path / "tpm_cert_store"
    store.mkdir()
    for cert in (swtpm.state.issuer_cert, swtpm.state.root_cert):
        shutil.copy(cert, store / cert.name)
    cfg = registrar_config(tmp_path / "registrar", tls, tpm_cert_store=store)
    return RunningRegistrar(cfg, await nursery.start(serve_registrar, cfg), tls)


def _pem(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


async def test_real_tpm_registers_and_activates_over_v3(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, swtpm: Swtpm
) -> None:
    registrar = await _start(nursery, tls_files, tmp_path, swtpm)
    async with opened(config(swtpm.tcti, tmp_path / "agent", "rsa")) as tpm:
        ek, ak, ek_cert = await tpm.ek(), await tpm.ak(), await tpm.ek_certificate()
        assert ek_cert is not None
        body = {
            "agent_id": AGENT_ID,
            "ek_tpm": b64(ek.public),
            "ekcert": _pem(ek_cert),
            "aik_tpm": b64(ak.public),
            "mtls_cert": "disabled",
            "ip": "127.0.0.1",
            "port": 9002,
        }
        async with registrar.agent_client() as agent, registrar.admin_client() as admin:
            # A wrong tag first: refused, and the pending record is gone.
            posted = await agent.post("/v3.0/agents", json=body)
            assert posted.status_code == 200, posted.text
            wrong = await agent.post(
                f"/v3.0/agents/{AGENT_ID}/activate",
                json={"auth_tag": expected_auth_tag("not-the-challenge", AGENT_ID)},
            )
            assert wrong.status_code == 400
            assert registrar.stored(AGENT_ID) is None

            posted = await agent.post("/v3.0/agents", json=body)
            assert posted.status_code == 200, posted.text
            blob = base64.b64decode(posted.json()["results"]["blob"])
            challenge = await tpm.activate_credential(blob)
            tag = expected_auth_tag(base64.b64encode(challenge).decode(), AGENT_ID)
            activated = await agent.post(
                f"/v3.0/agents/{AGENT_ID}/activate", json={"auth_tag": tag}
            )
            assert activated.status_code == 200, activated.text
            shown = (await admin.get(f"/v3.0/agents/{AGENT_ID}")).json()["results"]
            listed = (await admin.get("/v3.0/agents")).json()["results"]["uuids"]
    assert listed == [AGENT_ID]
    assert shown["aik_tpm"] == b64(ak.public)
    assert shown["ekcert"] == b64(ek_cert)
    assert shown["ek_tpm"] == b64(ek.public)
    assert (shown["ip"], shown["port"], shown["mtls_cert"]) == ("127.0.0.1", 9002, "disabled")
    row = registrar.stored(AGENT_ID)
    assert row is not None
    assert row["active"]
