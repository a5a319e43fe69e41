"""The command line without services: help, usage errors, config, policies, cert packages.

Every usage error here is found before any network I/O: the config points at addresses where
nothing listens, so reaching the network would show as exit 5 or 6, not 2.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from attest_protocol.keylime_facts import IMA_PCR
from tenant_lite.certpkg import REVOCATION_NAME, build_package
from tenant_lite.cli import main
from tenant_lite.config import TenantConfig, load_config
from tenant_lite.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, ConfigError, UsageError
from tenant_lite.policy import build_policies, parse_tpm_policy
from tests.tenant.support import run_tenant, write_config

COMMANDS = [
    ["add"], ["update"], ["delete"], ["status"], ["reactivate"], ["stop"], ["cvlist"],
    ["reglist"], ["regstatus"], ["regdelete"], ["bulkinfo"], ["policy"], ["policy", "add"],
    ["policy", "show"], ["policy", "list"], ["policy", "delete"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == EXIT_OK
    assert "usage: limelet-tenant" in capsys.readouterr().out


def test_top_level_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "3 not found" in out and "5 unreachable" in out


def test_unknown_command_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == EXIT_USAGE


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    """A config whose services do not exist (port 9 on loopback, no TLS files)."""
    return write_config(
        tmp_path / "t.toml", verifier_port=9, registrar_tls_port=9, tls_dir=str(tmp_path)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["add", "a1", "--include", "."],
        ["add", "a1", "--verify"],
        ["add", "a1", "--tpm-policy", "not json"],
        ["add", "a1", "--tpm-policy", '{"16": "00"}'],
        ["add", "a1", "-f", "/nonexistent/payload"],
        ["add", "a1", "-f", "x", "--cert", "y"],
        ["policy", "add", "p", "/nonexistent/policy.json"],
    ],
)
def test_usage_errors_exit_2_before_any_network(nowhere: Path, args: list[str]) -> None:
    run = run_tenant(nowhere, *args)
    assert run.code == EXIT_USAGE, run


def test_missing_tls_files_is_config_error_naming_the_file(nowhere: Path, tmp_path: Path) -> None:
    run = run_tenant(nowhere, "cvlist")
    assert run.code == EXIT_CONFIG, run
    assert str(tmp_path / "cacert.crt") in run.body["message"]


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "t.toml", verifer_port=1)
    run = run_tenant(config, "cvlist")
    assert run.code == EXIT_CONFIG
    assert "verifer_port" in run.body["message"]


def test_config_file_section_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[tenant]\nverifier_port = 9000\nrequire_ek_cert = false\n")
    env = {"LIMELET_TENANT_VERIFIER_IP": "127.0.0.2", "LIMELET_TENANT_REQUEST_TIMEOUT": "3"}
    config = load_config(path, env)
    assert (config.verifier_ip, config.verifier_port) == ("127.0.0.2", 9000)
    assert config.request_timeout == 3.0 and config.require_ek_cert is False
    with pytest.raises(ConfigError):
        load_config(None, {"LIMELET_TENANT_VERIFIER_PORT": "70000"})


def test_defaults_are_keylimes() -> None:
    config = TenantConfig()
    assert config.tls_path(config.trusted_server_ca) == Path("/var/lib/keylime/cv_ca/cacert.crt")
    assert (config.verifier_port, config.registrar_tls_port) == (8881, 8891)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {"mask": "0x0"}),
        ('{"0": "AB", "15": ["cd", "EF"]}', {"0": ["ab"], "15": ["cd", "ef"], "mask": "0x8001"}),
    ],
)
def test_tpm_policy_like_keylime_readpolicy(text: str | None, expected: dict[str, object]) -> None:
    assert parse_tpm_policy(text) == expected


@pytest.mark.parametrize(
    "text", ['{"10": "00"}', '{"16": "00"}', '{"24": "00"}', '{"x": "0"}', "[]"]
)
def test_tpm_policy_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_tpm_policy(text)


def test_runtime_policy_name_adds_ima_pcr_and_mb_refuses_its_pcrs() -> None:
    got = build_policies(
        tpm_policy=None, runtime_policy=None, runtime_policy_name="p",
        mb_policy=None, mb_policy_name=None,
    )  # fmt: skip
    assert int(got.tpm_policy["mask"], 16) == 1 << IMA_PCR
    with pytest.raises(UsageError, match="measured-boot"):
        build_policies(
            tpm_policy='{"0": "00"}', runtime_policy=None, runtime_policy_name=None,
            mb_policy=b"{}", mb_policy_name=None,
        )  # fmt: skip


def test_cert_package_members_and_revocation_key(tmp_path: Path) -> None:
    include = tmp_path / "include"
    include.mkdir()
    (include / "extra.txt").write_text("hello")
    package = build_package(tmp_path / "ca", "agent-7", include)
    with zipfile.ZipFile(io.BytesIO(package.zip_bytes)) as zf:
        names = set(zf.namelist())
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.read("extra.txt") == b"hello"
    assert names == {
        "agent-7-cert.crt", "agent-7-private.pem", "agent-7-public.pem", "cacert.crt",
        "cacrl.der", "cacrl.pem", f"{REVOCATION_NAME}-cert.crt", "extra.txt",
    }  # fmt: skip
    assert "PRIVATE KEY" in package.revocation_key_pem
    assert package.metadata["subject"] == "CN=agent-7"
    # A second package reuses the CA and the agent's certificate.
    again = build_package(tmp_path / "ca", "agent-7", None)
    assert again.metadata == package.metadata
    assert json.dumps(again.metadata)


def test_exit_code_and_env_overrides_through_the_process(tmp_path: Path) -> None:
    """The console entry point as an operator runs it: env overrides, JSON, exit status."""
    import os
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "LIMELET_TENANT_TLS_DIR": str(tmp_path),
        "LIMELET_TENANT_CONFIG": str(write_config(tmp_path / "t.toml", verifier_port=9)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tenant_lite.cli", "--json", "cvlist"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, done
    body = json.loads(done.stdout)
    assert body["ok"] is False and body["error"] == "config"
    assert str(tmp_path / "cacert.crt") in body["message"]
