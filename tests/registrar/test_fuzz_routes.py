"""Property-based fuzzing of every registrar route on both listeners (tests/http_fuzz.py):
the envelope, 2xx or 4xx, for generated and mutated bodies and paths; still answering after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registrar_lite.server import serve_registrar
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
from tests.registrar.support import (
    CLIENT_TIMEOUT_SECONDS,
    LOOPBACK,
    registrar_config,
    software_identity,
)

REAL = software_identity().body()
ROUTES = [
    ("GET", "/{v}/agents/"),
    ("GET", "/{v}/agents/{id}"),
    ("POST", "/{v}/agents/{id}"),
    ("PUT", "/{v}/agents/{id}"),
    ("PUT", "/{v}/agents/{id}/activate"),
    ("POST", "/{v}/agents/{id}/activate"),
    ("DELETE", "/{v}/agents/{id}"),
    ("GET", "/version"),
]
FIELDS = [*REAL, "auth_tag"]


@pytest.fixture
def clients(tls_files: TlsFiles, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(plain listener, mTLS listener)."""
    config = registrar_config(tmp_path / "registrar", tls_files)
    with ServiceThread(serve_registrar, config) as ports:
        plain = httpx.Client(
            base_url=f"http://{LOOPBACK}:{ports.port}", timeout=CLIENT_TIMEOUT_SECONDS
        )
        tls = httpx.Client(
            base_url=f"https://{LOOPBACK}:{ports.tls_port}",
            verify=tls_files.client_context(),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
        with plain, tls:
            yield plain, tls


@FUZZ_SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    version=versions(["v2.1", "v2.6"]),
    name=path_segment(),
    raw=bodies(FIELDS, REAL),
    params=queries(),
    admin=st.booleans(),
)
def test_every_registrar_route_answers_the_envelope(
    clients: tuple[httpx.Client, httpx.Client],
    route: tuple[str, str],
    version: str,
    name: str,
    raw: bytes,
    params: dict[str, str],
    admin: bool,
) -> None:
    method, template = route
    client = clients[1] if admin else clients[0]
    path = template.format(v=version, id=name)
    # A new connection each time: what is checked is the service, not connection reuse.
    fresh = {"Connection": "close"}
    assert_envelope(client.request(method, path, content=raw, params=params, headers=fresh))
    assert client.get("/version", headers=fresh).status_code == 200
