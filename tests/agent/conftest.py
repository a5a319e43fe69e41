"""Fixtures of the agent tests: software TPM keys (made once), an agent config in tmp_path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.config import AgentConfig
from tests.agent.support import SoftTpm


@pytest.fixture(scope="session")
def soft_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """An EK and an AK key pair (RSA-2048 generation is the slow part, so once a session)."""
    return rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)


@pytest.fixture
def soft_tpm(soft_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> SoftTpm:
    return SoftTpm(*soft_keys)


@pytest.fixture
def agent_config(tmp_path: Path) -> AgentConfig:
    """Defaults, with the data dir in tmp_path and fast backoff (0.1 s doubling to 1 s, 4x)."""
    return dataclasses.replace(
        AgentConfig(),
        keylime_dir=str(tmp_path / "keylime"),
        exponential_backoff_initial_delay=100,
        exponential_backoff_max_retries=4,
        exponential_backoff_max_delay=1000,
    )
