"""Starting in push mode: what is checked before the TPM is even opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.app import run_agent
from edge_agent.config import AgentConfig, OptionValueError
from edge_agent.tpm import Tpm, TpmConfig


async def no_tpm(config: TpmConfig) -> Tpm:
    raise AssertionError("the TPM must not be opened before the configuration is checked")


async def test_a_missing_verifier_ca_stops_the_push_agent_at_once(tmp_path: Path) -> None:
    config = AgentConfig(
        keylime_dir=str(tmp_path),
        push_model=True,
        verifier_tls_ca_cert=str(tmp_path / "missing-ca.crt"),
    )
    with pytest.raises(OptionValueError, match=r"verifier_tls_ca_cert .*file not found"):
        await run_agent(config, open_tpm=no_tpm)


async def test_push_mode_needs_no_server_ca_or_payload_settings(tmp_path: Path) -> None:
    """The pull agent's checks (trusted_client_ca, payload policy) do not apply: the first
    thing touched after the verifier CA is the TPM."""
    (tmp_path / "ca.crt").write_text("a CA")
    config = AgentConfig(
        keylime_dir=str(tmp_path),
        push_model=True,
        verifier_tls_ca_cert=str(tmp_path / "ca.crt"),
        trusted_client_ca=str(tmp_path / "no-such-client-ca.crt"),
        payload_script="autorun.sh",
        enable_agent_mtls=False,
    )
    with pytest.raises(AssertionError, match="must not be opened"):
        await run_agent(config, open_tpm=no_tpm)
