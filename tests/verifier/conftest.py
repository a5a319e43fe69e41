"""Fixtures: TLS material, a verifier on a free loopback port, a fake agent on swtpm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

import pytest
import trio

from edge_agent.tpm.pytss_backend import PytssTpm
from tests.cv_ca import TlsFiles, make_tls_files
from tests.swtpm.support import config as tpm_config
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import RunningVerifier, verifier_config
from tools.swtpm import Swtpm
from verifier_lite.server import serve_verifier


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("verifier-tls"))


@pytest.fixture
async def verifier(nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path) -> RunningVerifier:
    config = verifier_config(tmp_path / "verifier", tls_files)
    bound = await nursery.start(serve_verifier, config)
    return RunningVerifier(config, bound, tls_files)


@asynccontextmanager
async def open_fake_agent(
    nursery: trio.Nursery,
    swtpm: Swtpm,
    tls: TlsFiles,
    workdir: Path,
    *,
    ima_log: Optional[Path] = None,
    mb_log: Optional[bytes] = None,
) -> AsyncIterator[FakeAgent]:
    tpm = await PytssTpm.open(tpm_config(swtpm.tcti, workdir / "agent-tpm"))
    try:
        agent = await FakeAgent.create(tpm)
        agent.ima_log = ima_log
        agent.mb_log = mb_log
        (workdir / "agent").mkdir(parents=True)
        await nursery.start(agent.serve, workdir / "agent", tls)
        yield agent
    finally:
        await tpm.aclose()


@pytest.fixture
async def fake_agent(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> AsyncIterator[FakeAgent]:
    async with open_fake_agent(nursery, swtpm, tls_files, tmp_path) as agent:
        yield agent
