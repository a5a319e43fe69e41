"""Differential: the same API 3.0 requests to real Keylime 7.14.3's registrar and to ours.

Where Keylime answers a 4xx or 200 we give the same status (and, when it sends the
``{code, status, results}`` envelope, the same keys).  Where Keylime 7.14.3 answers 500 --
every well-formed 3.0 request, because its AgentsController calls ``respond()``, which raises
for API 3 (keylime/web/base/controller.py) -- the test records that 500 and checks that ours
answers what the v2 routes answer for the same request.
"""

from __future__ import annotations

from typing import Any, Optional

import httpx
import pytest
import trio

from tests.fixtures.keylime import KeylimeServices
from tests.registrar.support import RunningRegistrar, SoftwareIdentity

pytestmark = pytest.mark.interop

TIMEOUT_SECONDS = 30.0
KEYLIME_BUG = 500


def _keylime(
    services: KeylimeServices, method: str, path: str, body: Optional[dict[str, Any]], admin: bool
) -> httpx.Response:
    url = services.registrar_tls_url if admin else services.registrar_url
    verify: Any = services.ssl_context() if admin else False
    with httpx.Client(base_url=url, verify=verify, timeout=TIMEOUT_SECONDS, trust_env=False) as c:
        return c.request(method, path, json=body)


async def _both(
    services: KeylimeServices,
    registrar: RunningRegistrar,
    method: str,
    path: str,
    body: Optional[dict[str, Any]] = None,
    *,
    admin: bool = False,
) -> tuple[httpx.Response, httpx.Response]:
    theirs = await trio.to_thread.run_sync(_keylime, services, method, path, body, admin)
    client = registrar.admin_client() if admin else registrar.agent_client()
    async with client:
        ours = await client.request(method, path, json=body)
    return theirs, ours


def _envelope_keys(response: httpx.Response) -> Optional[set[str]]:
    try:
        body = response.json()
    except ValueError:
        return None
    return set(body) if isinstance(body, dict) else None


async def test_version(keylime_services: KeylimeServices, registrar: RunningRegistrar) -> None:
    theirs, ours = await _both(keylime_services, registrar, "GET", "/version")
    assert theirs.status_code == ours.status_code == 200
    assert _envelope_keys(theirs) == _envelope_keys(ours)
    t, o = theirs.json()["results"], ours.json()["results"]
    assert t["current_version"] == o["current_version"] == "2.6"
    assert t["supported_versions"][-1] == o["supported_versions"][-1] == "3.0"
    assert set(o["supported_versions"]) <= set(t["supported_versions"])


SAME_STATUS = [
    ("POST", "/v3.0/agents", {}),  # no agent_id at all
    ("POST", "/v3.0/agents/diff-1/activate", {}),  # no auth_tag
    ("PUT", "/v3.0/agents/diff-1/activate", {"auth_tag": "00"}),  # v2-only spelling
    ("PUT", "/v3.0/agents/diff-1", {"auth_tag": "00"}),
    ("POST", "/v3.0/agents/diff-1", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), SAME_STATUS)
async def test_same_status_as_keylime(
    keylime_services: KeylimeServices,
    registrar: RunningRegistrar,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    theirs, ours = await _both(keylime_services, registrar, method, path, body)
    assert 400 <= theirs.status_code < 500
    assert ours.status_code == theirs.status_code, (theirs.text, ours.text)
    assert ours.json()["code"] == ours.status_code


async def test_keylime_500s_where_ours_answers(
    keylime_services: KeylimeServices, registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    """Well-formed requests: Keylime 7.14.3 answers 500; ours answers as its v2 routes do."""
    cases: list[tuple[str, str, Optional[dict[str, Any]], bool, int]] = [
        ("GET", "/v3.0/", None, False, 200),
        ("GET", "/v3.0/agents", None, True, 200),
        ("GET", "/v3.0/agents/diff-none", None, True, 404),
        ("DELETE", "/v3.0/agents/diff-none", None, True, 404),
        ("POST", "/v3.0/agents/diff-none/activate", {"auth_tag": "ab" * 48}, False, 404),
        ("POST", "/v3.0/agents", {"agent_id": "diff-bad", "aik_tpm": "AAQAAA=="}, False, 400),
    ]
    for method, path, body, admin, expected in cases:
        theirs, ours = await _both(keylime_services, registrar, method, path, body, admin=admin)
        assert theirs.status_code == KEYLIME_BUG, (method, path, theirs.status_code)
        assert ours.status_code == expected, (method, path, ours.text)
        assert set(ours.json()) == {"code", "status", "results"}
    assert registrar.stored("diff-bad") is None
