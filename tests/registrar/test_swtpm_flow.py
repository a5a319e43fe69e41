"""A real TPM enrols: swtpm's EK, EK certificate and AK, the blob opened by ActivateCredential.

The registrar trusts swtpm's local CA (issuer + root) as its ``tpm_cert_store``, so the EK
certificate chain is checked too.  Both EK flavours, and the Keylime 6.x form that sends only
``ekcert`` (the registrar rebuilds ``ek_tpm`` from the TCG default template).
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import trio

from registrar_lite.server import serve_registrar
from registrar_lite.service import expected_auth_tag
from tests.cv_ca import TlsFiles
from tests.registrar.support import API, RunningRegistrar, b64, registrar_config
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm


async def _start(
    nursery: trio.Nursery,
    tls: TlsFiles,
    tmp_path: Path,
    swtpm: Swtpm,
    *,
    trust: bool,
    database_url: str = "sqlite",
) -> RunningRegistrar:
    store = None
    if trust:
        store = tmp_path / "tpm_cert_store"
        store.mkdir()
        for cert in (swtpm.state.issuer_cert, swtpm.state.root_cert):
            shutil.copy(cert, store / cert.name)
    cfg = registrar_config(tmp_path / "registrar", tls, tpm_cert_store=store)
    cfg = replace(cfg, database_url=database_url)
    return RunningRegistrar(cfg, await nursery.start(serve_registrar, cfg), tls)


# (EK flavour, send ek_tpm, send ekcert).  The session's swtpm has an RSA EK certificate
# only, so the ECC case registers without one and without a trust store.
CASES = [("rsa", True, True), ("rsa", False, True), ("ecc", True, False)]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each flow on both engines: SQLite, and PostgreSQL (registrar_lite/store_postgres.py)."""
    if request.param == "sqlite":
        return "sqlite"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.mark.parametrize(
    ("flavour", "send_ek_tpm", "send_cert"), CASES, ids=["rsa", "rsa-ekcert-only", "ecc-no-cert"]
)
async def test_real_tpm_registers_and_activates(
    nursery: trio.Nursery,
    tls_files: TlsFiles,
    tmp_path: Path,
    swtpm: Swtpm,
    flavour: str,
    send_ek_tpm: bool,
    send_cert: bool,
    database_url: str,
) -> None:
    registrar = await _start(
        nursery, tls_files, tmp_path, swtpm, trust=send_cert, database_url=database_url
    )
    agent_id = f"swtpm-{flavour}"
    async with opened(config(swtpm.tcti, tmp_path / "agent", flavour)) as tpm:
        ek, ak = await tpm.ek(), await tpm.ak()
        ek_cert = await tpm.ek_certificate() if send_cert else None
        body = {
            "ekcert": None if ek_cert is None else b64(ek_cert),
            "aik_tpm": b64(ak.public),
            "mtls_cert": None,
        }
        if send_ek_tpm:
            body["ek_tpm"] = b64(ek.public)
        async with registrar.agent_client() as agent, registrar.admin_client() as admin:
            posted = await agent.post(f"/{API}/agents/{agent_id}", json=body)
            assert posted.status_code == 200, posted.text
            blob = base64.b64decode(posted.json()["results"]["blob"])
            challenge = await tpm.activate_credential(blob)
            tag = expected_auth_tag(base64.b64encode(challenge).decode(), agent_id)
            activated = await agent.put(f"/{API}/agents/{agent_id}", json={"auth_tag": tag})
            assert activated.status_code == 200, activated.text
            shown = (await admin.get(f"/{API}/agents/{agent_id}")).json()["results"]
    assert shown["aik_tpm"] == b64(ak.public)
    assert shown["ekcert"] == (None if ek_cert is None else b64(ek_cert))
    assert shown["regcount"] == 1
    if send_ek_tpm:
        assert shown["ek_tpm"] == b64(ek.public)
    if database_url != "sqlite":  # the registration is in PostgreSQL, and no file was made
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT active, regcount FROM registrar_agents WHERE agent_id = %s", (agent_id,)
            ).fetchone()
        assert row == (True, 1)
        assert not (tmp_path / "registrar" / "reg_data.sqlite").exists()
