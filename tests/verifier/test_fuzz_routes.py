"""Property-based fuzzing of every verifier route (tests/http_fuzz.py): the envelope, 2xx or
4xx, for generated and mutated bodies, paths and query strings; still answering after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cv_ca import TlsFiles
from tests.http_fuzz import (
    FUZZ_SETTINGS,
    ServiceThread,
    assert_envelope,
    bodies,
    path_segment,
    queries,
    versions,
)
from tests.verifier.support import CLIENT_TIMEOUT_SECONDS, LOOPBACK, verifier_config
from tests.verifier.test_api import body, silent
from verifier_lite.server import serve_verifier

REAL = body()
ROUTES = [
    ("GET", "/{v}/agents/"),
    ("GET", "/{v}/agents/{id}"),
    ("POST", "/{v}/agents/{id}"),
    ("DELETE", "/{v}/agents/{id}"),
    ("PUT", "/{v}/agents/{id}/reactivate"),
    ("PUT", "/{v}/agents/{id}/stop"),
    ("GET", "/{v}/allowlists/{id}"),
    ("POST", "/{v}/allowlists/{id}"),
    ("PUT", "/{v}/allowlists/{id}"),
    ("DELETE", "/{v}/allowlists/{id}"),
    ("GET", "/{v}/mbpolicies/{id}"),
    ("POST", "/{v}/mbpolicies/{id}"),
    ("PUT", "/{v}/mbpolicies/{id}"),
    ("GET", "/{v}/verify/identity"),
    ("GET", "/version"),
]
FIELDS = [*REAL, "runtime_policy", "mb_policy", "tpm_policy", "nonce", "quote"]


async def _serve(config: Any, *, task_status: Any) -> None:
    await serve_verifier(config, channels=silent, task_status=task_status)


@pytest.fixture
def client(tls_files: TlsFiles, tmp_path: Path) -> Iterator[httpx.Client]:
    config = verifier_config(tmp_path / "verifier", tls_files)
    with ServiceThread(_serve, config) as bound:
        with httpx.Client(
            base_url=f"https://{LOOPBACK}:{bound.port}",
            verify=tls_files.client_context(),
            timeout=CLIENT_TIMEOUT_SECONDS,
        ) as http:
            yield http


@FUZZ_SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    version=versions(["v2.1", "v2.3", "v2.6"]),
    name=path_segment(),
    raw=bodies(FIELDS, REAL),
    params=queries(),
)
def test_every_verifier_route_answers_the_envelope(
    client: httpx.Client,
    route: tuple[str, str],
    version: str,
    name: str,
    raw: bytes,
    params: dict[str, Any],
) -> None:
    method, template = route
    path = template.format(v=version, id=name)
    # A new connection each time: what is checked is the service, not connection reuse.
    fresh = {"Connection": "close"}
    assert_envelope(client.request(method, path, content=raw, params=params, headers=fresh))
    assert client.get("/version", headers=fresh).status_code == 200
