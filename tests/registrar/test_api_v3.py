"""API 3.0 registration routes (registrar_lite/routes_v3.py): the happy path, then bad input.

Every refusal is a clear 4xx in the v2 envelope and leaves the stored rows as they were; the
checks are the ones the 2.x routes make (the same Registrar does the work).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.registrar.support import RunningRegistrar, SoftwareIdentity, with_other_ak

AGENT = "v3-agent"
PREFIXES = ["/v3.0", "/v3"]


def _body(identity: SoftwareIdentity, agent_id: str = AGENT, **extra: Any) -> dict[str, Any]:
    return {"agent_id": agent_id, **identity.body(**extra)}


async def _register_active(registrar: RunningRegistrar, identity: SoftwareIdentity) -> Any:
    async with registrar.agent_client() as agent:
        created = await agent.post("/v3.0/agents", json=_body(identity))
        assert created.status_code == 200, created.text
        assert created.json()["results"]["blob"]
        tag = registrar.auth_tag(AGENT)
        activated = await agent.post(f"/v3.0/agents/{AGENT}/activate", json={"auth_tag": tag})
        assert activated.status_code == 200, activated.text
    row = registrar.stored(AGENT)
    assert row is not None
    assert row["active"]
    return row


async def test_version_lists_3_0_and_current_stays_2_6(registrar: RunningRegistrar) -> None:
    async with registrar.agent_client() as agent:
        results = (await agent.get("/version")).json()["results"]
        roots = [await agent.get(f"{p}/") for p in PREFIXES]
    assert results["current_version"] == "2.6"
    assert results["supported_versions"][-1] == "3.0"
    assert "2.1" in results["supported_versions"]
    assert [(r.status_code, r.json()["code"]) for r in roots] == [(200, 200), (200, 200)]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_register_activate_show_delete(
    registrar: RunningRegistrar, identity: SoftwareIdentity, prefix: str
) -> None:
    async with registrar.agent_client() as agent:
        created = await agent.post(f"{prefix}/agents", json=_body(identity))
        assert created.status_code == 200, created.text
        tag = registrar.auth_tag(AGENT)
        activated = await agent.post(f"{prefix}/agents/{AGENT}/activate", json={"auth_tag": tag})
        assert activated.json() == {"code": 200, "status": "Success", "results": {}}
    async with registrar.admin_client() as admin:
        listed = (await admin.get(f"{prefix}/agents")).json()["results"]["uuids"]
        shown = (await admin.get(f"{prefix}/agents/{AGENT}")).json()["results"]
        deleted = await admin.delete(f"{prefix}/agents/{AGENT}")
        gone = await admin.get(f"{prefix}/agents/{AGENT}")
    assert listed == [AGENT]
    assert shown["aik_tpm"] == identity.body()["aik_tpm"]
    assert shown["regcount"] == 1
    assert deleted.status_code == 200
    assert gone.status_code == 404
    assert registrar.stored(AGENT) is None


async def test_v2_post_with_id_in_body(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    """Keylime's v2 scope shares ``POST /agents`` (registrar_server.py _registration_routes)."""
    async with registrar.agent_client() as agent:
        created = await agent.post("/v2.6/agents", json=_body(identity))
    assert created.status_code == 200, created.text
    assert registrar.stored(AGENT) is not None


async def test_admin_routes_refused_on_plain_port(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    before = await _register_active(registrar, identity)
    async with registrar.agent_client() as agent:
        answers = [
            await agent.get("/v3.0/agents"),
            await agent.get(f"/v3.0/agents/{AGENT}"),
            await agent.delete(f"/v3.0/agents/{AGENT}"),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert registrar.stored(AGENT) == before


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no agent_id", {"agent_id": None}, "'agent_id'"),
    ("agent_id not a string", {"agent_id": 7}, "'agent_id'"),
    ("agent_id with newline", {"agent_id": f"{AGENT}\nx"}, "'agent_id'"),
    ("aik garbage", {"aik_tpm": "AAQAAA=="}, "'aik_tpm'"),
    ("ekcert not a cert", {"ekcert": "MAMCAQE="}, "'ekcert'"),
    ("port out of range", {"port": 70000}, "'port'"),
]


@pytest.mark.parametrize(
    ("change", "needle"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
async def test_bad_registration_changes_nothing(
    registrar: RunningRegistrar, identity: SoftwareIdentity, change: dict[str, Any], needle: str
) -> None:
    before = await _register_active(registrar, identity)
    body = {**_body(identity), **change}
    if body["agent_id"] is None:
        del body["agent_id"]
    async with registrar.agent_client() as agent:
        response = await agent.post("/v3.0/agents", json=body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["status"]
    assert registrar.stored(AGENT) == before


async def test_other_ak_is_forbidden(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    before = await _register_active(registrar, identity)
    async with registrar.agent_client() as agent:
        response = await agent.post("/v3.0/agents", json=_body(with_other_ak(identity)))
    assert response.status_code == 403
    assert registrar.stored(AGENT) == before


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"just a string"'], ids=range(4)
)
async def test_malformed_bodies(
    registrar: RunningRegistrar, identity: SoftwareIdentity, raw: bytes
) -> None:
    before = await _register_active(registrar, identity)
    async with registrar.agent_client() as agent:
        for path in ("/v3.0/agents", f"/v3.0/agents/{AGENT}/activate"):
            response = await agent.post(path, content=raw)
            assert response.status_code == 400, (path, response.text)
            assert "'body'" in response.json()["status"]
    assert registrar.stored(AGENT) == before


@pytest.mark.parametrize("tag", ["", "00", "G" * 96, 7, None])
async def test_malformed_auth_tag(
    registrar: RunningRegistrar, identity: SoftwareIdentity, tag: object
) -> None:
    async with registrar.agent_client() as agent:
        assert (await agent.post("/v3.0/agents", json=_body(identity))).is_success
        before = registrar.stored(AGENT)
        response = await agent.post(f"/v3.0/agents/{AGENT}/activate", json={"auth_tag": tag})
    assert response.status_code == 400
    assert "'auth_tag'" in response.json()["status"]
    assert registrar.stored(AGENT) == before


async def test_wrong_auth_tag_leaves_active_record(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    before = await _register_active(registrar, identity)
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/v3.0/agents/{AGENT}/activate", json={"auth_tag": "ab" * 48})
    assert response.status_code == 400
    assert "ab" * 48 not in response.text
    assert registrar.stored(AGENT) == before


async def test_unknown_agent_activate_is_404(registrar: RunningRegistrar) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.post("/v3.0/agents/nobody/activate", json={"auth_tag": "ab" * 48})
    assert response.status_code == 404
    assert response.json()["code"] == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/v3.0/agents/{AGENT}/activate"),
        ("PUT", f"/v3.0/agents/{AGENT}"),
        ("POST", f"/v3.0/agents/{AGENT}"),
    ],
)
async def test_v2_compat_spellings_are_405_on_3_0(
    registrar: RunningRegistrar, identity: SoftwareIdentity, method: str, path: str
) -> None:
    """Keylime's v3 scope has no v2-compat routes; it answers 405, as we do."""
    before = await _register_active(registrar, identity)
    async with registrar.agent_client() as agent:
        response = await agent.request(method, path, json={"auth_tag": "ab" * 48})
    assert response.status_code == 405
    assert response.json()["code"] == 405
    assert registrar.stored(AGENT) == before


async def test_unsupported_minor_is_400(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.post("/v3.1/agents", json=_body(identity))
    assert 400 <= response.status_code < 500
    assert registrar.stored(AGENT) is None
