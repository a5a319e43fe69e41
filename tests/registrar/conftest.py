"""Fixtures: TLS material from attest_protocol.pki, and a registrar on free loopback ports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from registrar_lite.server import serve_registrar
from tests.cv_ca import TlsFiles, make_tls_files
from tests.registrar.support import (
    RunningRegistrar,
    SoftwareIdentity,
    registrar_config,
    software_identity,
)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("registrar-tls"))


@pytest.fixture(scope="session")
def identity() -> SoftwareIdentity:
    return software_identity()


@pytest.fixture
async def registrar(nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path) -> RunningRegistrar:
    """A registrar without an EK trust store, served in-process over real TCP/TLS."""
    config = registrar_config(tmp_path / "registrar", tls_files)
    ports = await nursery.start(serve_registrar, config)
    return RunningRegistrar(config, ports, tls_files)


@pytest.fixture(params=["sqlite", "postgres"])
async def registrar_engines(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> RunningRegistrar:
    """The registrar above on SQLite, and on a real PostgreSQL server (a fresh database)."""
    config = registrar_config(tmp_path / "registrar", tls_files)
    if request.param == "postgres":
        config = replace(config, database_url=request.getfixturevalue("postgres_url"))
    ports = await nursery.start(serve_registrar, config)
    return RunningRegistrar(config, ports, tls_files)
