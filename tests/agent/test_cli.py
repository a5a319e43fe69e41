"""limelet-agent --check-config, --version, and start-up errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent.cli import main


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KEYLIME_AGENT_CONFIG points at a file in tmp_path, so /etc is never read."""
    for name in list(os.environ):
        if name.startswith("KEYLIME_AGENT_") or name == "KEYLIME_DIR":
            monkeypatch.delenv(name)
    path = tmp_path / "agent.conf"
    monkeypatch.setenv("KEYLIME_AGENT_CONFIG", str(path))
    return path


def test_check_config_prints_the_effective_config_without_secrets(
    conf: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf.write_text('[agent]\ncontact_port = 4242\nserver_key_password = "hunter2"\n')
    monkeypatch.setenv("KEYLIME_AGENT_ENABLE_AGENT_MTLS", "false")
    assert main(["--check-config"]) == 0
    out = capsys.readouterr().out
    assert "contact_port = 4242\n" in out
    assert "enable_agent_mtls = false\n" in out
    assert 'server_key_password = "<set>"' in out
    assert "hunter2" not in out
    assert f"# read: {conf}" in out


def test_check_config_reports_the_error_and_fails(
    conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf.write_text('[agent]\ncontact_port = "many"\n')
    assert main(["--check-config"]) == 1
    err = capsys.readouterr().err
    assert "contact_port" in err
    assert str(conf) in err


def test_check_config_lists_ignored_keys_with_the_closest_option(
    conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf.write_text('[agent]\ncontact_prot = 1\ntls_dir = "default"\n')
    assert main(["--check-config"]) == 0
    out = capsys.readouterr().out
    assert f"# ignored: {conf}: option 'contact_prot' is unknown" in out
    assert "closest known option: contact_port" in out
    assert "option 'tls_dir' is written by Keylime's templates" in out


def test_strict_fails_on_an_ignored_key(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf.write_text('[agent]\ntls_dir = "default"\n')
    assert main(["--check-config", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "tls_dir" in err
    assert str(conf) in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert "limelet-agent" in capsys.readouterr().out
