"""Bad input is refused with 400 naming the field, and changes nothing stored.

One table drives the field cases.  Each case runs against a registrar that already holds an
active agent with the same id where the id is valid, so "nothing changed" is checked against
a real record, not an empty table.  CVE-2022-23949: agent ids with newlines, escape codes or
Unicode look-alikes are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from registrar_lite.config import DEFAULT_MAX_BODY_BYTES
from tests.registrar.support import API, RunningRegistrar, SoftwareIdentity, b64

AGENT = "victim"
Body = dict[str, Any]


def _set(**fields: Any) -> Callable[[Body], Body]:
    return lambda body: {**body, **fields}


def _drop(name: str) -> Callable[[Body], Body]:
    return lambda body: {k: v for k, v in body.items() if k != name}


NOT_A_CERT = b64(b"\x30\x03\x02\x01\x01")
GARBAGE_TPM2B = b64(b"\x00\x04abcd")
FIELD_CASES: list[tuple[str, Callable[[Body], Body], str]] = [
    ("aik missing", _drop("aik_tpm"), "aik_tpm"),
    ("aik not a string", _set(aik_tpm=12), "aik_tpm"),
    ("aik bad base64", _set(aik_tpm="!!notbase64!!"), "aik_tpm"),
    ("aik empty", _set(aik_tpm=""), "aik_tpm"),
    ("aik garbage", _set(aik_tpm=GARBAGE_TPM2B), "aik_tpm"),
    ("ek garbage", _set(ek_tpm=GARBAGE_TPM2B), "ek_tpm"),
    ("ek wrong type", _set(ek_tpm=["x"]), "ek_tpm"),
    ("no ek at all", lambda b: _drop("ekcert")(_drop("ek_tpm")(b)), "ek_tpm"),
    ("ekcert bad base64", _set(ekcert="@@@"), "ekcert"),
    ("ekcert not a cert", _set(ekcert=NOT_A_CERT), "ekcert"),
    ("ekcert bad pem", _set(ekcert="-----BEGIN CERTIFICATE-----\nAAAA\n"), "ekcert"),
    ("mtls_cert garbage", _set(mtls_cert="not a certificate"), "mtls_cert"),
    ("mtls_cert wrong type", _set(mtls_cert=5), "mtls_cert"),
    ("port too big", _set(port=70000), "port"),
    ("port zero", _set(port=0), "port"),
    ("port bool", _set(port=True), "port"),
    ("port text", _set(port="80; rm"), "port"),
    ("ip garbage", _set(ip="1.2.3.4\nX-Injected: 1"), "ip"),
    ("ip wrong type", _set(ip=1234), "ip"),
    ("iak_tpm garbage", _set(iak_tpm=GARBAGE_TPM2B), "iak_tpm"),
    ("idevid_cert garbage", _set(idevid_cert=NOT_A_CERT), "idevid_cert"),
    ("iak_attest bad base64", _set(iak_attest="%%"), "iak_attest"),
]


async def _seed(registrar: RunningRegistrar, identity: SoftwareIdentity) -> dict[str, Any]:
    async with registrar.agent_client() as agent:
        assert (await agent.post(f"/{API}/agents/{AGENT}", json=identity.body())).is_success
        tag = registrar.auth_tag(AGENT)
        assert (await agent.put(f"/{API}/agents/{AGENT}", json={"auth_tag": tag})).is_success
    row = registrar.stored(AGENT)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("change", "field"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
async def test_bad_field(
    registrar: RunningRegistrar,
    identity: SoftwareIdentity,
    change: Callable[[Body], Body],
    field: str,
) -> None:
    before = await _seed(registrar, identity)
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/{AGENT}", json=change(identity.body()))
    assert response.status_code == 400, response.text
    assert f"'{field}'" in response.json()["status"]
    assert registrar.stored(AGENT) == before


BAD_IDS = [
    "line\nbreak",
    "escape\x1b[31m",
    "\u0430gent",  # Cyrillic a
    "caf\u00e9",
    "-leading-dash",
    ".hidden",
    "a" * 256,
    "semi;colon",
]


@pytest.mark.parametrize("agent_id", BAD_IDS, ids=range(len(BAD_IDS)))
async def test_bad_agent_id(
    registrar: RunningRegistrar, identity: SoftwareIdentity, agent_id: str
) -> None:
    path = f"/{API}/agents/{quote(agent_id, safe='')}"
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        posted = await agent.post(path, json=identity.body())
        shown = await admin.get(path)
        listed = (await admin.get(f"/{API}/agents/")).json()["results"]["uuids"]
    for response in (posted, shown):
        assert response.status_code == 400
        assert "'agent_id'" in response.json()["status"]
        assert agent_id not in response.text
    assert listed == []


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "not a JSON object"), (b"\xff\xfe", "JSON")],
)
async def test_malformed_body(
    registrar: RunningRegistrar, identity: SoftwareIdentity, raw: bytes, needle: str
) -> None:
    before = await _seed(registrar, identity)
    async with registrar.agent_client() as agent:
        for path in (f"/{API}/agents/{AGENT}", f"/{API}/agents/{AGENT}/activate"):
            method = "POST" if path.endswith(AGENT) else "PUT"
            response = await agent.request(method, path, content=raw)
            assert response.status_code == 400
            assert needle in response.json()["status"]
            assert "'body'" in response.json()["status"]
    assert registrar.stored(AGENT) == before


async def test_body_over_limit(registrar: RunningRegistrar, identity: SoftwareIdentity) -> None:
    before = await _seed(registrar, identity)
    body = identity.body(padding="x" * DEFAULT_MAX_BODY_BYTES)
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/{AGENT}", json=body)
    assert response.status_code == 413
    assert str(DEFAULT_MAX_BODY_BYTES) in response.json()["status"]
    assert registrar.stored(AGENT) == before


async def test_json_without_content_type(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.post(
            f"/{API}/agents/bare", content=json.dumps(identity.body()).encode()
        )
    assert "content-type" not in response.request.headers
    assert response.status_code == 200


async def test_string_port_and_hostname_are_accepted(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.post(
            f"/{API}/agents/lenient", json=identity.body(port="9002", ip="agent.example")
        )
    assert response.status_code == 200
    row = registrar.stored("lenient")
    assert row is not None
    assert (row["port"], row["ip"]) == (9002, "agent.example")


@pytest.mark.parametrize("tag", ["", "00", "G" * 96, 7, None])
async def test_malformed_auth_tag_changes_nothing(
    registrar: RunningRegistrar, identity: SoftwareIdentity, tag: object
) -> None:
    async with registrar.agent_client() as agent:
        assert (await agent.post(f"/{API}/agents/{AGENT}", json=identity.body())).is_success
        before = registrar.stored(AGENT)
        response = await agent.put(f"/{API}/agents/{AGENT}", json={"auth_tag": tag})
    assert response.status_code == 400
    assert "'auth_tag'" in response.json()["status"]
    assert registrar.stored(AGENT) == before
