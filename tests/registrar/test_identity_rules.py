"""Identity rules: immutability, races, the AK check, the EK certificate, activation secrets.

Each test names the CVE whose vulnerable behaviour it catches.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Optional

import pytest
import trio

from attest_protocol.tpm2.constants import TpmaObject
from attest_protocol.tpm2.public import AK_REQUIRED_ATTRIBUTES
from registrar_lite.server import serve_registrar
from tests.cv_ca import TlsFiles
from tests.registrar.support import (
    API,
    RunningRegistrar,
    SoftwareIdentity,
    ak_public,
    b64,
    ek_certificate,
    registrar_config,
    software_identity,
    with_other_ak,
)


@pytest.fixture
def registrar(registrar_engines: RunningRegistrar) -> RunningRegistrar:
    """These rules on both engines: SQLite and PostgreSQL (registrar_lite/store_postgres.py)."""
    return registrar_engines


async def _register(registrar: RunningRegistrar, agent_id: str, body: dict[str, object]) -> int:
    async with registrar.agent_client() as agent:
        return (await agent.post(f"/{API}/agents/{agent_id}", json=body)).status_code


async def _activate(registrar: RunningRegistrar, agent_id: str, tag: str) -> dict[str, object]:
    async with registrar.agent_client() as agent:
        response = await agent.put(f"/{API}/agents/{agent_id}/activate", json={"auth_tag": tag})
    result: dict[str, object] = response.json()
    return result


def _other_ek_and_cert() -> tuple[str, str]:
    other = software_identity()
    return b64(other.ek_tpm), b64(other.ekcert)


@pytest.mark.parametrize("field", ["aik_tpm", "ek_tpm", "ekcert", "ek_tpm+ekcert"])
async def test_identity_change_is_403_and_changes_nothing(
    registrar: RunningRegistrar, identity: SoftwareIdentity, field: str
) -> None:
    """Keylime 7.14.3 _check_tpm_identity_immutable: an id cannot move to another TPM."""
    assert await _register(registrar, "fixed", identity.body()) == 200
    await _activate(registrar, "fixed", registrar.auth_tag("fixed"))
    before = registrar.stored("fixed")
    ek, cert = _other_ek_and_cert()
    table: dict[str, dict[str, Optional[str]]] = {
        "aik_tpm": {"aik_tpm": b64(ak_public())},
        "ek_tpm": {"ek_tpm": ek, "ekcert": None},
        # Same key, another certificate: Keylime compares the whole certificate.
        "ekcert": {"ekcert": b64(ek_certificate(identity.ek_key))},
        "ek_tpm+ekcert": {"ek_tpm": ek, "ekcert": cert},
    }
    changes = table[field]
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/fixed", json=identity.body(**changes))
    assert response.status_code == 403
    assert "different TPM identity" in response.json()["status"]
    assert registrar.stored("fixed") == before


async def test_concurrent_registrations_one_winner(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    """CVE-2025-13609: two registrations of one new id with different AKs; one wins."""
    rivals = [identity, with_other_ak(identity), with_other_ak(identity), with_other_ak(identity)]
    codes: list[int] = []

    async def attempt(who: SoftwareIdentity) -> None:
        codes.append(await _register(registrar, "contested", who.body()))

    async with trio.open_nursery() as nursery:
        for who in rivals:
            nursery.start_soon(attempt, who)
    assert sorted(codes) == [200] + [403] * (len(rivals) - 1)
    row = registrar.stored("contested")
    assert row is not None
    assert row["regcount"] == 1
    winners = [w for w in rivals if w.aik_tpm == row["aik_tpm"]]
    assert len(winners) == 1


@pytest.mark.parametrize(
    "attributes",
    [
        AK_REQUIRED_ATTRIBUTES & ~TpmaObject.RESTRICTED,
        AK_REQUIRED_ATTRIBUTES & ~TpmaObject.FIXED_TPM,
        AK_REQUIRED_ATTRIBUTES | TpmaObject.DECRYPT,
    ],
    ids=["unrestricted", "not-fixed-tpm", "decrypt"],
)
async def test_unsuitable_ak_refused(
    registrar: RunningRegistrar, identity: SoftwareIdentity, attributes: int
) -> None:
    """CVE-2021-3406: an AK that could sign forged quotes must not be registered."""
    body = identity.body(aik_tpm=b64(ak_public(int(attributes))))
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/weak-ak", json=body)
    assert response.status_code == 400
    assert "'aik_tpm'" in response.json()["status"]
    assert registrar.stored("weak-ak") is None


async def test_ekcert_must_hold_ek_tpm(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    _, other_cert = _other_ek_and_cert()
    async with registrar.agent_client() as agent:
        response = await agent.post(
            f"/{API}/agents/mismatch", json=identity.body(ekcert=other_cert)
        )
    assert response.status_code == 400
    assert "'ek_tpm'" in response.json()["status"]
    assert registrar.stored("mismatch") is None


async def test_wrong_auth_tag_deletes_pending_and_hides_expected(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    """CVE-2023-38201: the error once carried the expected tag, so anyone could activate."""
    assert await _register(registrar, "guess", identity.body()) == 200
    row = registrar.stored("guess")
    assert row is not None
    expected = registrar.auth_tag("guess")
    wrong = ("0" if expected[0] != "0" else "1") + expected[1:]
    result = await _activate(registrar, "guess", wrong)
    assert result["code"] == 400
    text = str(result)
    for secret in (expected, row["challenge_key"], base64.b64decode(row["challenge_key"]).decode()):
        assert secret not in text
    assert wrong not in text
    assert registrar.stored("guess") is None
    # The leaked-tag attack: the right tag afterwards finds nothing to activate.
    assert (await _activate(registrar, "guess", expected))["code"] == 404


async def test_wrong_tag_leaves_active_agent_alone(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    assert await _register(registrar, "settled", identity.body()) == 200
    assert (await _activate(registrar, "settled", registrar.auth_tag("settled")))["code"] == 200
    before = registrar.stored("settled")
    assert (await _activate(registrar, "settled", "a" * 96))["code"] == 400
    assert registrar.stored("settled") == before


async def test_activation_of_unknown_agent(registrar: RunningRegistrar) -> None:
    result = await _activate(registrar, "nobody", "a" * 96)
    assert result == {"code": 404, "status": "Agent with ID 'nobody' not found", "results": {}}


async def test_ekcert_must_chain_to_trust_store(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, identity: SoftwareIdentity
) -> None:
    """With tpm_cert_store set, an EK certificate from an unknown maker is refused."""
    store = tmp_path / "tpm_cert_store"
    store.mkdir()
    (store / "unrelated.pem").write_bytes(tls_files.ca.cert_pem)
    config = registrar_config(tmp_path / "reg", tls_files, tpm_cert_store=store)
    running = RunningRegistrar(config, await nursery.start(serve_registrar, config), tls_files)
    assert await _register(running, "untrusted", identity.body()) == 400
    no_cert = identity.body(ekcert=None)
    async with running.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/certless", json=no_cert)
    assert response.status_code == 400
    assert "'ekcert'" in response.json()["status"]
    assert running.stored("untrusted") is None
