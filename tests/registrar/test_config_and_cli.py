"""Configuration loading, the command line, and clean shutdown on cancel and SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from registrar_lite.cli import main
from registrar_lite.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    RegistrarConfig,
    load_config,
)
from registrar_lite.errors import ConfigError
from registrar_lite.server import serve_registrar
from tests.cv_ca import TlsFiles
from tests.fixtures.clean_stop import assert_clean_stop
from tests.registrar.support import LOOPBACK, registrar_config

SHUTDOWN_TIMEOUT_SECONDS = 10


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registrar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_keylime_ports() -> None:
    config = load_config(None, environ={})
    assert (config.port, config.tls_port) == (DEFAULT_PORT, DEFAULT_TLS_PORT) == (8890, 8891)
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES


def test_file_then_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[registrar]\nport = 9000\ndata_dir = "/srv/reg"\n')
    config = load_config(path, environ={"LIMELET_REGISTRAR_TLS_PORT": "9001", "OTHER": "x"})
    assert (config.port, config.tls_port, config.data_dir) == (9000, 9001, "/srv/reg")
    assert config.sqlite_path() == Path("/srv/reg/reg_data.sqlite")
    assert config.server_cert_path == Path("/srv/reg/cv_ca/server-cert.crt")


@pytest.mark.parametrize(
    ("text", "environ", "key"),
    [
        ("prot = 1\n", {}, "prot"),
        ("[registrar]\ntls_prot = 1\n", {}, "tls_prot"),
        ("", {"LIMELET_REGISTRAR_BOGUS": "1"}, "bogus"),
        ('port = "many"\n', {}, "port"),
        ("port = 70000\n", {}, "port"),
        ("ip = 5\n", {}, "ip"),
    ],
)
def test_bad_options_name_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_toml(tmp_path, text), environ=environ)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite", Path("/d/reg_data.sqlite")),
        ("sqlite:////var/db/reg.sqlite", Path("/var/db/reg.sqlite")),
        ("sqlite:///rel.sqlite", Path("/d/rel.sqlite")),
    ],
)
def test_database_url(url: str, expected: Path) -> None:
    assert RegistrarConfig(data_dir="/d", database_url=url).sqlite_path() == expected


def test_unsupported_database_url() -> None:
    with pytest.raises(ConfigError, match="database_url"):
        RegistrarConfig(database_url="postgresql://db/keylime").sqlite_path()


@pytest.mark.parametrize("url", ["mysql+pymysql://u@db/reg", "postgresqlx://u@db/reg", "pg"])
def test_a_database_url_of_neither_engine_is_refused_before_start(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = RegistrarConfig(data_dir=str(tmp_path), database_url=url)
    assert not config.uses_postgres
    with pytest.raises(ConfigError, match="sqlite:///PATH' or a PostgreSQL URL"):
        config.check_database()
    toml = _toml(tmp_path, f'database_url = "{url}"\ndata_dir = "{tmp_path}"\n')
    assert main(["--check-config", "-c", str(toml)]) == 2
    assert "database_url" in capsys.readouterr().err


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config", "-c", str(_toml(tmp_path, "port = 1234\n"))]) == 0
    assert main(["--check-config", "-c", str(_toml(tmp_path, "nope = 1\n"))]) == 2
    assert "nope" in capsys.readouterr().err


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) != 0


async def test_cancel_closes_both_listeners(tls_files: TlsFiles, tmp_path: Path) -> None:
    config = registrar_config(tmp_path / "reg", tls_files)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(serve_registrar, config)
        assert not _refused(ports.port)
        nursery.cancel_scope.cancel()
    assert _refused(ports.port)
    assert _refused(ports.tls_port)


def test_sigterm_stops_the_service(tls_files: TlsFiles, tmp_path: Path) -> None:
    cfg = _toml(
        tmp_path,
        f'ip = "{LOOPBACK}"\nport = 0\ntls_port = 0\ndata_dir = "{tmp_path / "reg"}"\n'
        f'tls_dir = "{tls_files.directory}"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "registrar_lite.cli", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("limelet-registrar: http "), banner
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS) == 0
        assert process.stderr is not None
        assert_clean_stop(process.stderr.read())
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_json_log_format(tls_files: TlsFiles, tmp_path: Path) -> None:
    """``--log-format json``: every line the running service logs is one JSON object."""
    cfg = _toml(
        tmp_path,
        f'ip = "{LOOPBACK}"\nport = 0\ntls_port = 0\ndata_dir = "{tmp_path / "reg"}"\n'
        f'tls_dir = "{tls_files.directory}"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "registrar_lite.cli", "-c", str(cfg), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith("limelet-registrar: http ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS) == 0
        lines = [json.loads(text) for text in process.stderr.read().splitlines()]
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    messages = {(line["logger"], line["message"]) for line in lines}
    assert ("limelet.registrar", "signal SIGTERM: shutting down") in messages, lines
    assert all(line["level"] and line["timestamp"] for line in lines)
