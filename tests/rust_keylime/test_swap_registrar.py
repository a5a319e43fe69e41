"""Swapping rust-keylime 0.2.9 and limelet-agent on one device under limelet-registrar.

Same swtpm, same ``keylime_dir``, same agent.conf (rust-keylime's shipped one with this
machine's paths and ports): the second agent reuses the first one's AK from agent_data.json,
so the registrar accepts the re-registration (no 403, no tenant action).  When the AK file is
lost, the refusal says what changed: the registrar logs the differing fields, and the agent
names the AK and what to do.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

import pytest
import trio

from edge_agent.config import AgentConfig, load_config
from edge_agent.registrar_client import RegistrationForbidden
from tests.agent.test_registrar_lite import register_on_swtpm, start_registrar
from tests.registrar.support import RunningRegistrar
from tests.rust_keylime.support import require_rust_agent, running_rust_agent, rust_conf
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

pytestmark = [
    pytest.mark.swtpm,
    # rust-keylime 0.2.9 gives its self-signed mTLS certificate a serial number that is not
]


def _setup(tmp_path: Path, registrar: RunningRegistrar) -> tuple[Path, AgentConfig]:
    keylime_dir = tmp_path / "keylime"
    keylime_dir.mkdir()
    conf = tmp_path / "agent.conf"
    conf.write_text(
        rust_conf(
            keylime_dir,
            uuid=str(uuid.uuid4()),
            port=free_port(),
            registrar_port=registrar.ports.port,
        )
    )
    return conf, load_config(environ={"KEYLIME_AGENT_CONFIG": str(conf)})


def _registered_ak(registrar: RunningRegistrar, agent_id: str) -> bytes:
    row = registrar.stored(agent_id)
    assert row is not None, f"{agent_id} is not registered"
    value = row["aik_tpm"]
    return value if isinstance(value, bytes) else base64.b64decode(value)


async def test_rust_keylime_then_limelet_then_rust_keylime_without_re_enrolment(
    nursery: trio.Nursery, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_rust_agent()
    monkeypatch.setenv("TCTI", swtpm.tcti)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    conf, config = _setup(tmp_path, registrar)
    with running_rust_agent(conf, swtpm.tcti, tmp_path) as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {config.uuid} activated")
    first_ak = _registered_ak(registrar, config.uuid)

    started, _, ak = await register_on_swtpm(config)  # raises RegistrationForbidden on a 403
    assert started.agent_id == config.uuid
    assert ak == first_ak == _registered_ak(registrar, config.uuid)

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "back") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {config.uuid} activated")
        assert "Loaded old AK key from" in rust.log()
    assert _registered_ak(registrar, config.uuid) == first_ak


async def test_limelet_then_rust_keylime_without_re_enrolment(
    nursery: trio.Nursery, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_rust_agent()
    monkeypatch.setenv("TCTI", swtpm.tcti)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    conf, config = _setup(tmp_path, registrar)
    _, _, ak = await register_on_swtpm(config)
    with running_rust_agent(conf, swtpm.tcti, tmp_path) as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {config.uuid} activated")
        assert "Loaded old AK key from" in rust.log()
    assert _registered_ak(registrar, config.uuid) == ak


async def test_a_lost_ak_file_is_refused_with_what_changed(
    nursery: trio.Nursery,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TCTI", swtpm.tcti)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    _, config = _setup(tmp_path, registrar)
    await register_on_swtpm(config)
    (config.data_dir / "agent_data.json").unlink()
    with caplog.at_level(logging.WARNING), pytest.raises(RegistrationForbidden) as caught:
        await register_on_swtpm(config)
    message = str(caught.value)
    assert "the AK changed" in message
    assert "agent_data.json" in message
    assert f"keylime_tenant -c regdelete -u {config.uuid}" in message
    refusals = [
        r.getMessage() for r in caplog.records if "Refused re-registration" in r.getMessage()
    ]
    assert refusals == [
        f"Refused re-registration of agent {config.uuid}: aik_tpm differ from the registered ones"
    ]
