"""attest_protocol.settings: TOML + environment into a frozen dataclass, one table of cases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from attest_protocol.settings import (
    MAX_PORT,
    TOP_LEVEL,
    SettingsError,
    build_settings,
    env_overrides,
    load_settings,
    merge_document,
    parse_toml,
    range_error,
    sqlite_file,
)

PREFIX = "DEMO_"


@dataclass(frozen=True)
class Demo:
    name: str = "default"
    port: int = 8881
    interval: float = 2.0
    enabled: bool = True
    algs: str = "sha256"

    def __post_init__(self) -> None:
        if self.port < 0:
            raise RuntimeError("port must not be negative")  # stands for a component's error


def build(
    document: dict[str, Any],
    environ: Optional[dict[str, str]] = None,
    list_options: Optional[tuple[str, ...]] = ("algs",),
) -> Demo:
    return build_settings(
        Demo,
        document,
        environ or {},
        PREFIX,
        sections=("demo", "extra"),
        exclude_env=("DEMO_CONFIG",),
        list_options=list_options,
    )


# (id, document, environ, expected fields)
GOOD: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any]]] = [
    ("defaults", {}, {}, {}),
    ("top-level", {"port": 1, "name": "x"}, {}, {"port": 1, "name": "x"}),
    ("section-beats-top-level", {"port": 1, "demo": {"port": 2}}, {}, {"port": 2}),
    ("later-section-wins", {"extra": {"port": 3}, "demo": {"port": 2}}, {}, {"port": 3}),
    ("env-beats-file", {"demo": {"port": 2}}, {"DEMO_PORT": "4"}, {"port": 4}),
    ("int-is-a-float", {"interval": 3}, {}, {"interval": 3.0}),
    ("float-from-env", {}, {"DEMO_INTERVAL": "0.5"}, {"interval": 0.5}),
    ("bool-from-env-yes", {}, {"DEMO_ENABLED": "YES"}, {"enabled": True}),
    ("bool-from-env-off", {}, {"DEMO_ENABLED": "off"}, {"enabled": False}),
    ("bool-from-env-0", {}, {"DEMO_ENABLED": "0"}, {"enabled": False}),
    ("toml-bool", {"enabled": False}, {}, {"enabled": False}),
    ("list-joined", {"algs": ["sha384", "sha256"]}, {}, {"algs": "sha384,sha256"}),
    ("other-variables-ignored", {}, {"OTHER": "x", "DEMO_CONFIG": "/etc/x"}, {}),
    ("str-from-env-stays-text", {}, {"DEMO_NAME": "42"}, {"name": "42"}),
]


@pytest.mark.parametrize(
    ("document", "environ", "expected"),
    [case[1:] for case in GOOD],
    ids=[case[0] for case in GOOD],
)
def test_good_settings(
    document: dict[str, Any], environ: dict[str, str], expected: dict[str, Any]
) -> None:
    got = build(document, environ)
    want = Demo(**expected)
    assert got == want
    assert {k: type(v) for k, v in vars(got).items()} == {k: type(v) for k, v in vars(want).items()}


# (id, document, environ, key, source, reason fragment)
BAD: list[tuple[str, dict[str, Any], dict[str, str], str, str, str]] = [
    ("unknown-top-level", {"prot": 1}, {}, "prot", TOP_LEVEL, "unknown option"),
    ("unknown-in-section", {"demo": {"prot": 1}}, {}, "prot", "[demo]", "unknown option"),
    ("unknown-env", {}, {"DEMO_BOGUS": "1"}, "bogus", "DEMO_BOGUS", "unknown option"),
    ("section-not-a-table", {"demo": 5}, {}, "demo", TOP_LEVEL, "must be a table"),
    ("text-for-int", {"port": "many"}, {}, "port", TOP_LEVEL, "expected int"),
    ("env-text-for-int", {}, {"DEMO_PORT": "x"}, "port", "DEMO_PORT", "expected int"),
    ("float-for-int", {"port": 1.5}, {}, "port", TOP_LEVEL, "expected int, got float"),
    ("bool-is-no-int", {"port": True}, {}, "port", TOP_LEVEL, "expected int, got bool"),
    ("bool-is-no-float", {"interval": True}, {}, "interval", TOP_LEVEL, "got bool"),
    ("int-for-str", {"name": 5}, {}, "name", TOP_LEVEL, "expected str, got int"),
    ("int-for-bool", {"enabled": 1}, {}, "enabled", TOP_LEVEL, "expected bool, got int"),
    ("maybe", {}, {"DEMO_ENABLED": "maybe"}, "enabled", "DEMO_ENABLED", "true or false"),
    ("list-not-allowed", {"name": ["a"]}, {}, "name", TOP_LEVEL, "expected str, got list"),
    ("list-for-int", {"port": [1]}, {}, "port", TOP_LEVEL, "expected int, got list"),
]


@pytest.mark.parametrize(
    ("document", "environ", "key", "source", "reason"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_settings_name_the_key_and_source(
    document: dict[str, Any], environ: dict[str, str], key: str, source: str, reason: str
) -> None:
    with pytest.raises(SettingsError, match=reason) as caught:
        build(document, environ)
    assert (caught.value.key, caught.value.source) == (key, source)
    assert caught.value.detail == f"{caught.value.reason} ({source})"
    assert key in str(caught.value) and source in str(caught.value)


def test_list_options_none_means_every_str_option() -> None:
    assert build({"name": ["a", "b"]}, list_options=None).name == "a,b"


def test_post_init_errors_pass_through() -> None:
    with pytest.raises(RuntimeError, match="negative"):
        build({"port": -1})


def test_values_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        build({}, {"DEMO_PORT": "s3cret"})
    assert "s3cret" not in str(caught.value)


def test_parse_toml() -> None:
    assert parse_toml('port = 1\n[demo]\nname = "x"\n', "f.toml") == {
        "port": 1,
        "demo": {"name": "x"},
    }
    with pytest.raises(SettingsError, match="cannot be read as TOML") as caught:
        parse_toml("port = = 1\n", "f.toml")
    assert (caught.value.key, caught.value.detail) == ("f.toml", caught.value.reason)


def test_env_overrides_and_merge_document() -> None:
    assert env_overrides({"DEMO_A_B": "1", "DEMOX": "2", "DEMO_C": "3"}, PREFIX, ("DEMO_C",)) == {
        "a_b": ("1", "DEMO_A_B")
    }
    assert merge_document({"a": 1, "demo": {"a": 2}}, ("demo",)) == {"a": (2, "[demo]")}


class NotADataclass:
    pass


@dataclass(frozen=True)
class NoDefault:
    value: list[str]


@pytest.mark.parametrize("cls", [NotADataclass, NoDefault])
def test_unsupported_classes_are_a_programming_error(cls: type[Any]) -> None:
    with pytest.raises(TypeError):
        build_settings(cls, {}, {}, PREFIX)


def test_load_settings_from_text() -> None:
    got = load_settings(
        Demo, "[demo]\nport = 2\n", "d.toml", {"DEMO_NAME": "n"}, PREFIX, sections=("demo",)
    )
    assert got == Demo(port=2, name="n")
    assert load_settings(Demo, None, "None", {}, PREFIX) == Demo()
    with pytest.raises(SettingsError, match="cannot be read as TOML"):
        load_settings(Demo, "port =", "d.toml", {}, PREFIX)


@dataclass(frozen=True)
class Limits:
    port: int = 1
    timeout: float = 1.0
    retries: int = 0


# (id, fields, port 0 allowed, expected (option, reason) or None)
RANGES: list[tuple[str, dict[str, Any], bool, Optional[tuple[str, str]]]] = [
    ("all-good", {}, True, None),
    ("port-zero-free-port", {"port": 0}, True, None),
    ("port-zero-dialled", {"port": 0}, False, ("port", "0 is not a TCP port")),
    ("port-max", {"port": MAX_PORT}, False, None),
    ("port-too-big", {"port": MAX_PORT + 1}, True, ("port", "65536 is not a TCP port")),
    ("port-negative", {"port": -1}, True, ("port", "-1 is not a TCP port")),
    ("zero-timeout", {"timeout": 0.0}, True, ("timeout", "must be positive")),
    ("negative-retries", {"retries": -1}, True, ("retries", "must not be negative")),
    ("ports-first", {"port": -1, "timeout": 0.0}, True, ("port", "-1 is not a TCP port")),
]


@pytest.mark.parametrize(
    ("values", "zero_ok", "expected"), [c[1:] for c in RANGES], ids=[c[0] for c in RANGES]
)
def test_range_error(
    values: dict[str, Any], zero_ok: bool, expected: Optional[tuple[str, str]]
) -> None:
    limits = Limits(**values)
    got = range_error(
        limits,
        ports=("port",),
        port_zero_ok=zero_ok,
        positive=("timeout",),
        non_negative=("retries",),
    )
    assert got == expected


# (database_url, data_dir, expected file or None when it is not SQLite)
SQLITE: list[tuple[str, str, Optional[Path]]] = [
    ("sqlite", "/d", Path("/d/cv_data.sqlite")),
    ("sqlite:////var/db/x.sqlite", "/d", Path("/var/db/x.sqlite")),
    ("sqlite:///rel.sqlite", "/d", Path("/d/rel.sqlite")),
    ("sqlite:///", "/d", None),
    ("SQLITE", "/d", None),
    ("postgresql://h/db", "/d", None),
    ("", "/d", None),
]


@pytest.mark.parametrize(("url", "data_dir", "expected"), SQLITE)
def test_sqlite_file(url: str, data_dir: str, expected: Optional[Path]) -> None:
    assert sqlite_file(url, data_dir, "cv_data.sqlite") == expected
