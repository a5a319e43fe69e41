"""Fixtures of the agent API tests: a test CA, and a config whose TCTI names the test's swtpm."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from tests.agent_api.support import ClientPki, agent_config, install_ca, make_pki
from tools.swtpm import Swtpm


@pytest.fixture
def pki(tmp_path: Path) -> ClientPki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def config(
    tmp_path: Path, swtpm: Swtpm, pki: ClientPki, monkeypatch: pytest.MonkeyPatch
) -> AgentConfig:
    # The TCTI variable would win over the option (as in rust-keylime).
    monkeypatch.delenv("TCTI", raising=False)
    cfg = agent_config(tmp_path, swtpm.tcti)
    install_ca(cfg, pki)
    return cfg
