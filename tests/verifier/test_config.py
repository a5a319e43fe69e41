"""Config: TOML + environment, Keylime option names, ``tls_dir = generate``, the CLI."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.fixtures.clean_stop import assert_clean_stop
from verifier_lite.cli import main
from verifier_lite.config import VerifierConfig, load_config
from verifier_lite.errors import ConfigError
from verifier_lite.tls import ensure_tls_dir


def test_toml_section_and_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "verifier.toml"
    path.write_text(
        '[verifier]\nuuid = "v1"\nport = 9881\nquote_interval = 1\nexponential_backoff = false\n'
        'registrar_ip = "10.0.0.2"\nrequest_timeout = 3.5\n'
    )
    config = load_config(path, {"LIMELET_VERIFIER_MAX_RETRIES": "7", "OTHER": "x"})
    assert (config.uuid, config.port, config.quote_interval) == ("v1", 9881, 1.0)
    assert config.exponential_backoff is False
    assert (config.max_retries, config.request_timeout, config.registrar_ip) == (7, 3.5, "10.0.0.2")


@pytest.mark.parametrize(
    ("text", "environ", "key"),
    [
        ("bogus = 1\n", {}, "bogus"),
        ("port = 70000\n", {}, "port"),
        ('port = "x"\n', {}, "port"),
        ("max_retries = -1\n", {}, "max_retries"),
        ("", {"LIMELET_VERIFIER_EXPONENTIAL_BACKOFF": "maybe"}, "exponential_backoff"),
        ("", {"LIMELET_VERIFIER_NOPE": "1"}, "nope"),
    ],
)
def test_bad_options_name_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], key: str
) -> None:
    path = tmp_path / "verifier.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ)
    assert info.value.key == key


def test_database_url_forms(tmp_path: Path) -> None:
    base = VerifierConfig(data_dir=str(tmp_path))
    assert base.sqlite_path() == tmp_path / "cv_data.sqlite"
    assert VerifierConfig(data_dir=str(tmp_path), database_url="sqlite:///x.db").sqlite_path() == (
        tmp_path / "x.db"
    )
    with pytest.raises(ConfigError):
        VerifierConfig(database_url="postgresql://h/db").sqlite_path()


def test_generate_makes_keylime_cv_ca_once_and_keeps_it(tmp_path: Path) -> None:
    config = VerifierConfig(data_dir=str(tmp_path))
    assert ensure_tls_dir(config) is True
    directory = tmp_path / "cv_ca"
    names = {"cacert.crt", "server-cert.crt", "server-private.pem", "client-cert.crt"}
    assert names | {"client-private.pem"} <= {p.name for p in directory.iterdir()}
    ca = x509.load_pem_x509_certificate((directory / "cacert.crt").read_bytes())
    server = x509.load_pem_x509_certificate((directory / "server-cert.crt").read_bytes())
    assert server.issuer == ca.subject
    assert stat.S_IMODE(os.stat(directory / "server-private.pem").st_mode) == 0o600
    before = (directory / "cacert.crt").read_bytes()
    assert ensure_tls_dir(config) is False
    assert (directory / "cacert.crt").read_bytes() == before


def test_operator_tls_dir_is_left_alone(tmp_path: Path) -> None:
    config = VerifierConfig(data_dir=str(tmp_path), tls_dir=str(tmp_path / "mine"))
    assert ensure_tls_dir(config) is False
    assert not (tmp_path / "mine").exists()


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["-c", str(path), "--check-config"]) == 0
    path.write_text("unknown_thing = 1\n")
    assert main(["-c", str(path), "--check-config"]) == 2
    assert "unknown_thing" in capsys.readouterr().err


def test_console_script_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "verifier_lite.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "--check-config" in result.stdout


def test_service_process_generates_tls_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The console script end to end: generate cv_ca, serve /version over mTLS, SIGTERM."""
    config = tmp_path / "v.toml"
    config.write_text(f'[verifier]\ndata_dir = "{tmp_path}"\nport = 0\n')
    log = tmp_path / "stderr.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "verifier_lite.cli", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "limelet-verifier: mTLS <port>"
            assert line.startswith("limelet-verifier: mTLS "), log.read_text()
            port = int(line.split()[-1])
            cv_ca = tmp_path / "cv_ca"
            ctx = ssl.create_default_context(cafile=str(cv_ca / "cacert.crt"))
            ctx.load_cert_chain(str(cv_ca / "client-cert.crt"), str(cv_ca / "client-private.pem"))
            response = httpx.get(f"https://127.0.0.1:{port}/version", verify=ctx, timeout=10)
            assert response.json()["results"]["current_version"] == "2.6"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert_clean_stop(log.read_text())
