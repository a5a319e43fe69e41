"""agent.conf: load order, .d snippets, environment overrides, unknown keys, warnings."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from attest_protocol.api_version import SUPPORTED_VERSIONS, ApiVersion
from edge_agent.config import (
    AgentConfig,
    ConfigFileError,
    ConfigPaths,
    OptionValueError,
    UnknownOptionError,
    config_files,
    load_config,
    option_names,
    parse_api_versions,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGED_CONF = REPO / "packaging" / "config" / "agent.conf"
WARNING_TEXT = "is not implemented by limelet yet"


@pytest.fixture
def paths(tmp_path: Path) -> ConfigPaths:
    """The four system locations, moved into tmp_path (nothing exists until a test writes it)."""
    return ConfigPaths(
        sys_file=tmp_path / "usr" / "agent.conf",
        sys_snippets=tmp_path / "usr" / "agent.conf.d",
        file=tmp_path / "etc" / "agent.conf",
        snippets=tmp_path / "etc" / "agent.conf.d",
    )


def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[agent]\n" + body)
    return path


def not_implemented_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WARNING_TEXT in r.getMessage()]


def test_no_files_gives_the_built_in_defaults(paths: ConfigPaths) -> None:
    assert load_config(environ={}, paths=paths) == AgentConfig()


def test_packaged_agent_conf_is_exactly_the_defaults(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture
) -> None:
    text = PACKAGED_CONF.read_text()
    write(paths.file, text.split("[agent]", 1)[1])
    config = load_config(environ={}, paths=paths)
    assert config == AgentConfig()
    # Every option is spelt out in the packaged file, and nothing else is.
    keys = {line.split("=")[0].strip() for line in text.splitlines() if "=" in line[:45]}
    keys = {k for k in keys if not k.startswith("#")}
    assert keys == set(option_names())
    assert not_implemented_warnings(caplog) == []


def test_load_order_files_then_snippets_then_environment(paths: ConfigPaths) -> None:
    write(paths.sys_file, 'contact_port = 1001\nregistrar_ip = "sys.example"\nuuid = "a"\n')
    write(paths.sys_snippets / "20-b.conf", "contact_port = 1003\n")
    write(paths.sys_snippets / "10-a.conf", "contact_port = 1002\nregistrar_port = 2001\n")
    write(paths.file, "contact_port = 1004\n")
    write(paths.snippets / "50-z", 'contact_port = 1005\nuuid = "b"\n')
    write(paths.snippets / "10-y.conf", "registrar_port = 2002\ncontact_port = 1006\n")
    environ = {"KEYLIME_AGENT_UUID": "c"}
    config = load_config(environ=environ, paths=paths)
    assert config.contact_port == 1005  # etc snippets come last, in name order
    assert config.registrar_port == 2002
    assert config.registrar_ip == "sys.example"
    assert config.uuid == "c"  # the environment beats every file
    order = [p.relative_to(paths.file.parent.parent) for p in config_files(paths, environ)]
    assert [str(p) for p in order] == [
        "usr/agent.conf",
        "usr/agent.conf.d/10-a.conf",
        "usr/agent.conf.d/20-b.conf",
        "etc/agent.conf",
        "etc/agent.conf.d/10-y.conf",
        "etc/agent.conf.d/50-z",
    ]


def test_keylime_agent_config_replaces_the_files_but_not_the_environment(
    paths: ConfigPaths, tmp_path: Path
) -> None:
    write(paths.file, "contact_port = 1004\nregistrar_port = 7\n")
    single = write(tmp_path / "only.conf", "contact_port = 4242\n")
    environ = {"KEYLIME_AGENT_CONFIG": str(single), "KEYLIME_AGENT_REGISTRAR_PORT": "9999"}
    config = load_config(environ=environ, paths=paths)
    assert (config.contact_port, config.registrar_port) == (4242, 9999)


def test_keylime_agent_config_naming_a_missing_file_is_an_error(
    paths: ConfigPaths, tmp_path: Path
) -> None:
    with pytest.raises(ConfigFileError, match="KEYLIME_AGENT_CONFIG"):
        load_config(environ={"KEYLIME_AGENT_CONFIG": str(tmp_path / "nope")}, paths=paths)


def test_environment_values_are_typed(paths: ConfigPaths) -> None:
    environ = {
        "KEYLIME_AGENT_ENABLE_AGENT_MTLS": "false",
        "KEYLIME_AGENT_CONTACT_PORT": "9999",
        "KEYLIME_AGENT_CONTACT_IP": "fe80::1",
        "KEYLIME_AGENT_EXPONENTIAL_BACKOFF_MAX_RETRIES": "0",
    }
    config = load_config(environ=environ, paths=paths)
    assert config.enable_agent_mtls is False
    assert config.contact_port == 9999
    assert config.contact_ip == "fe80::1"
    assert config.exponential_backoff_max_retries == 0


def test_keylime_dir_variable_overrides_keylime_dir(paths: ConfigPaths, tmp_path: Path) -> None:
    write(paths.file, 'keylime_dir = "/srv/a"\nserver_key = "keys/k.pem"\n')
    config = load_config(environ={"KEYLIME_DIR": str(tmp_path)}, paths=paths)
    assert config.data_dir == tmp_path
    assert config.server_key_path == tmp_path / "keys" / "k.pem"
    assert config.server_cert_path == tmp_path / "server-cert.crt"
    assert config.payload_key_path == tmp_path / "payload-private.pem"


def test_absolute_key_paths_are_kept(paths: ConfigPaths) -> None:
    write(paths.file, 'payload_key = "/etc/nk.pem"\n')
    assert load_config(environ={}, paths=paths).payload_key_path == Path("/etc/nk.pem")


def ignored_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if ": option '" in r.getMessage()]


def test_unknown_key_in_a_snippet_warns_once_naming_key_file_and_suggestion(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture
) -> None:
    snippet = write(paths.snippets / "90-typo.conf", "registar_port = 1\n")
    with caplog.at_level(logging.WARNING):
        assert load_config(environ={}, paths=paths) == AgentConfig()
    [message] = ignored_warnings(caplog)
    assert str(snippet) in message
    assert "'registar_port' is unknown" in message
    assert "closest known option: registrar_port" in message


def test_unknown_key_is_an_error_when_strict(paths: ConfigPaths) -> None:
    snippet = write(paths.snippets / "90-typo.conf", "registar_port = 1\n")
    with pytest.raises(UnknownOptionError) as caught:
        load_config(environ={}, paths=paths, strict=True)
    assert caught.value.option == "registar_port"
    assert str(snippet) in str(caught.value)
    assert "registrar_port" in str(caught.value)  # the suggestion


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("tls_dir", "server_cert"),
        ("max_retries", "exponential_backoff_max_retries"),
        ("retry_interval", "exponential_backoff_initial_delay"),
        ("exponential_backoff", "exponential_backoff_max_delay"),
    ],
)
def test_keylime_template_keys_warn_with_the_option_that_replaced_them(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture, key: str, closest: str
) -> None:
    write(paths.file, f'{key} = "x"\n')
    with caplog.at_level(logging.WARNING):
        load_config(environ={}, paths=paths)
    [message] = ignored_warnings(caplog)
    assert f"{key!r} is written by Keylime's templates" in message
    assert f"closest known option: {closest}" in message


def test_other_tables_are_ignored_with_a_warning(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture
) -> None:
    paths.file.parent.mkdir(parents=True)
    paths.file.write_text("[agnet]\nport = 1\n[agent]\nport = 2\n")
    with caplog.at_level(logging.WARNING):
        assert load_config(environ={}, paths=paths).port == 2
    [message] = ignored_warnings(caplog)
    assert "'[agnet]'" in message
    with pytest.raises(UnknownOptionError, match="agnet"):
        load_config(environ={}, paths=paths, strict=True)


def test_unknown_environment_variable_warns_and_is_an_error_when_strict(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"KEYLIME_AGENT_CONTACT_PROT": "1"}
    with caplog.at_level(logging.WARNING):
        load_config(environ=environ, paths=paths)
    [message] = ignored_warnings(caplog)
    assert message.startswith("KEYLIME_AGENT_CONTACT_PROT: option 'contact_prot' is unknown")
    with pytest.raises(UnknownOptionError) as caught:
        load_config(environ=environ, paths=paths, strict=True)
    assert caught.value.option == "contact_prot"
    assert caught.value.source == "KEYLIME_AGENT_CONTACT_PROT"


def test_invalid_toml_is_an_error(paths: ConfigPaths) -> None:
    write(paths.file, "port = = 3\n")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(environ={}, paths=paths)


@pytest.mark.parametrize(
    ("body", "option"),
    [
        ('contact_port = "many"\n', "contact_port"),
        ("registrar_port = 70000\n", "registrar_port"),
        ("enable_agent_mtls = 3\n", "enable_agent_mtls"),
        ('contact_ip = "not an address!"\n', "contact_ip"),
        ('uuid = "spaces are not allowed"\n', "uuid"),
        ('tpm_signing_alg = "ecdsa"\n', "tpm_signing_alg"),
        ("exponential_backoff_initial_delay = 500000\n", "exponential_backoff_initial_delay"),
    ],
)
def test_bad_values_name_the_option(paths: ConfigPaths, body: str, option: str) -> None:
    write(paths.file, body)
    with pytest.raises(OptionValueError) as caught:
        load_config(environ={}, paths=paths)
    assert caught.value.option == option
    assert caught.value.source == str(paths.file)


def test_secret_values_never_appear_in_errors(paths: ConfigPaths) -> None:
    write(paths.file, "payload_key_password = [ 'hunter2' ]\n")
    with pytest.raises(OptionValueError) as caught:
        load_config(environ={}, paths=paths)
    assert "hunter2" not in str(caught.value)
    assert "<hidden>" in str(caught.value)


def test_one_warning_per_unimplemented_option_set_to_a_non_default(
    paths: ConfigPaths, caplog: pytest.LogCaptureFixture
) -> None:
    write(paths.file, 'enable_iak_idevid = true\nport = 9002\nrun_as = ""\n')
    write(paths.snippets / "a.conf", "enable_iak_idevid = true\n")
    environ = {
        "KEYLIME_AGENT_ENABLE_IAK_IDEVID": "true",
        "KEYLIME_AGENT_IAK_PASSWORD": "s3cret",
    }
    with caplog.at_level(logging.WARNING):
        load_config(environ=environ, paths=paths)
    warned = not_implemented_warnings(caplog)
    # run_as is implemented: setting it warns of nothing.
    assert sorted(w.split()[1] for w in warned) == ["enable_iak_idevid", "iak_password"]
    assert not any("s3cret" in w for w in warned)
    # port was set, but to its default: no warning.


def test_display_hides_secrets() -> None:
    config = dataclasses.replace(AgentConfig(), server_key_password="pw")  # noqa: S106
    shown = config.display()
    assert shown["server_key_password"] == "<set>"  # noqa: S105
    assert shown["iak_password"] == ""
    assert list(shown) == list(option_names())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default", SUPPORTED_VERSIONS),
        ("latest", (SUPPORTED_VERSIONS[-1],)),
        ("2.2, 2.1", (ApiVersion(2, 1), ApiVersion(2, 2))),
        ('["2.3", "9.9"]', (ApiVersion(2, 3),)),
        ("1.0", SUPPORTED_VERSIONS),
    ],
)
def test_api_versions(text: str, expected: tuple[ApiVersion, ...]) -> None:
    assert parse_api_versions(text) == expected


def test_tcti_option_reaches_the_tpm_layer_and_the_variable_wins(
    paths: ConfigPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(paths.file, 'tcti = "swtpm:host=127.0.0.1,port=2321"\n')
    monkeypatch.delenv("TCTI", raising=False)
    config = load_config(environ={}, paths=paths)
    assert config.tpm_config().tcti == "swtpm:host=127.0.0.1,port=2321"
    monkeypatch.setenv("TCTI", "device:/dev/tpmrm1")
    assert config.tpm_config().tcti == "device:/dev/tpmrm1"
    assert AgentConfig().tpm_config().tcti == "device:/dev/tpmrm1"
