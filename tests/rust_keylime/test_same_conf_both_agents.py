"""The agent.conf files rust-keylime 0.2.9 starts with also start limelet (and vice versa).

Inputs: rust-keylime's shipped default, one written by Keylime 7.14.3's templates (with
``tls_dir``, which no agent reads), and the shipped one plus drop-ins; see confs/PROVENANCE.md.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from edge_agent.config import ConfigPaths, UnknownOptionError, load_config
from tests.rust_keylime.support import (
    SHIPPED_CONF,
    TEMPLATE_CONF,
    require_rust_agent,
    running_rust_agent,
    rust_conf,
)
from tests.swtpm.support import config, opened
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

IGNORED = ": option '"  # the ignored-key warning (edge_agent.config.unknown)


def _ignored(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if IGNORED in r.getMessage()]


def test_rust_keylimes_shipped_conf_loads_without_warnings_even_strict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"KEYLIME_AGENT_CONFIG": str(SHIPPED_CONF)}
    with caplog.at_level(logging.WARNING):
        config_ = load_config(environ=environ, strict=True)
    assert _ignored(caplog) == []
    assert config_.uuid == "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
    assert config_.secure_size == "1m"
    assert config_.tpm_config().ak_path == Path("/var/lib/keylime/agent_data.json")


def test_keylime_template_conf_loads_with_one_warning_for_tls_dir(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"KEYLIME_AGENT_CONFIG": str(TEMPLATE_CONF), "KEYLIME_DIR": "/srv/kl"}
    with caplog.at_level(logging.WARNING):
        config_ = load_config(environ=environ)
    [message] = _ignored(caplog)
    assert "'tls_dir'" in message and "closest known option: server_cert" in message
    # agent_data_path = "" means the default file, as in rust-keylime (config_get_file_path).
    assert config_.tpm_config().ak_path == Path("/srv/kl/agent_data.json")
    with pytest.raises(UnknownOptionError, match="tls_dir"):
        load_config(environ=environ, strict=True)


def test_shipped_conf_with_drop_ins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = ConfigPaths(
        sys_file=tmp_path / "usr" / "agent.conf",
        sys_snippets=tmp_path / "usr" / "agent.conf.d",
        file=tmp_path / "etc" / "agent.conf",
        snippets=tmp_path / "etc" / "agent.conf.d",
    )
    paths.sys_file.parent.mkdir(parents=True)
    paths.sys_file.write_text(SHIPPED_CONF.read_text())
    paths.snippets.mkdir(parents=True)
    (paths.snippets / "10-site.conf").write_text(
        '[agent]\ncontact_port = 9102\ntls_dir = "default"\nagent_data_path = "tpm/ak.json"\n'
    )
    (paths.snippets / "20-host.conf").write_text('[agent]\nkeylime_dir = "/srv/kl"\n')
    with caplog.at_level(logging.WARNING):
        loaded = load_config(environ={}, paths=paths)
    assert loaded.contact_port == 9102
    assert loaded.tpm_config().ak_path == Path("/srv/kl/tpm/ak.json")
    [message] = _ignored(caplog)
    assert str(paths.snippets / "10-site.conf") in message and "'tls_dir'" in message


@pytest.mark.swtpm
@pytest.mark.parametrize("source", [SHIPPED_CONF, TEMPLATE_CONF], ids=["shipped", "template"])
async def test_both_agents_start_with_the_same_conf(
    swtpm: Swtpm, tmp_path: Path, source: Path
) -> None:
    require_rust_agent()
    keylime_dir = tmp_path / "keylime"
    keylime_dir.mkdir()
    conf = tmp_path / "agent.conf"
    agent_id = str(uuid.uuid4())
    conf.write_text(
        rust_conf(
            keylime_dir,
            uuid=agent_id,
            port=free_port(),
            registrar_port=free_port(),
            source=source,
        )
    )
    with running_rust_agent(conf, swtpm.tcti, tmp_path) as rust:
        rust.wait_for_log(f"Agent UUID: {agent_id}")
    loaded = load_config(environ={"KEYLIME_AGENT_CONFIG": str(conf), "TCTI": swtpm.tcti})
    assert loaded.uuid == agent_id
    async with opened(config(swtpm.tcti, keylime_dir)) as tpm:
        assert not (await tpm.ak()).created  # the AK rust-keylime stored, from the same conf
    tpm_config = loaded.tpm_config()
    assert tpm_config.ak_path == keylime_dir / "agent_data.json"
