"""Typed, frozen settings from a parsed TOML document and an environment: the shared rules.

Every limelet service reads its options the same way (DESIGN.md rule 9): a TOML file whose
options sit at top level or in the component's Keylime section(s) (``[registrar]``,
``[verifier]`` and ``[revocations]``, ``[tenant]``), then ``PREFIX_OPTION`` environment
variables on top.  Each component keeps its own frozen dataclass (option names, defaults as
named constants, range checks in ``__post_init__``) and its own file reading; this module
does the merging and the type coercion, so the rules cannot drift apart:

* an option's type is the type of its default: ``str``, ``int``, ``float`` or ``bool``;
* an ``int`` is a fine ``float``; ``bool`` is never an ``int`` (TOML ``true`` is no port);
* environment values are text: ``"9001"`` becomes 9001, ``true/1/yes/on`` and
  ``false/0/no/off`` (any case) become booleans;
* a TOML list becomes comma-separated text for the ``str`` options that allow it (Keylime
  writes e.g. ``enabled_revocation_notifications`` as a list);
* an unknown option is an error naming it and where it came from.

It also holds the checks and path rules the services' dataclasses share: TCP port, positive
and non-negative ranges (:func:`range_error`) and Keylime's SQLite ``database_url`` forms
(:func:`sqlite_file`).

Pure: text and mappings in, a dataclass out.  Errors::

    SettingsError (ValueError)   ``key`` (the option, section or file), ``source`` (the file
                                 section or environment variable), ``reason``
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar

from attest_protocol.errors import AttestProtocolError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

__all__ = [
    "FALSE_WORDS",
    "MAX_PORT",
    "DATABASE_URL_FORMS",
    "POSTGRES_URL_FORMS",
    "TOP_LEVEL",
    "TRUE_WORDS",
    "SettingsError",
    "build_settings",
    "env_overrides",
    "load_settings",
    "merge_document",
    "parse_toml",
    "range_error",
    "postgres_conninfo",
    "sqlite_file",
]

T = TypeVar("T")

# The spellings of a boolean in an environment variable (and in TOML text for a bool option).
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
# The source named for options at the top level of the TOML document.
TOP_LEVEL = "top level"
_SCALAR_KINDS = (str, int, float, bool)
MAX_PORT = 65535
# keylime.conf's database_url for SQLite: the word "sqlite" (KEYLIME_DIR/<service>_data.sqlite)
# or SQLAlchemy's URL, sqlite:///relative or sqlite:////absolute.
_SQLITE_WORD = "sqlite"
_SQLITE_URL_PREFIX = "sqlite:///"
# SQLAlchemy-style PostgreSQL URLs, as Keylime's database_url takes them: postgresql:// or
# postgres://, with or without a +driver part (service_kit/postgres.py always uses psycopg 3).
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_URL_FORMS = "PostgreSQL URLs look like postgresql[+driver]://user@host:port/db"
DATABASE_URL_FORMS = (
    f"expected 'sqlite', 'sqlite:///PATH' or a PostgreSQL URL ({POSTGRES_URL_FORMS})"
)


class SettingsError(AttestProtocolError, ValueError):
    """An option that cannot be used; messages name options, never their values.

    A server's own configuration, never a client's fault: should one surface while a request
    is handled, the handlers answer 500 and log it.
    """

    http_status = 500

    def __init__(self, key: str, source: str, reason: str) -> None:
        super().__init__(f"{key} ({source}): {reason}")
        self.key = key
        self.source = source
        self.reason = reason

    @property
    def detail(self) -> str:
        """``reason``, and where the option came from unless that is ``key`` itself."""
        return self.reason if self.source == self.key else f"{self.reason} ({self.source})"


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML document in ``text``; ``source`` (the file name) names it in the error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(source, source, f"cannot be read as TOML: {exc}") from exc


def merge_document(
    document: Mapping[str, Any], sections: Sequence[str]
) -> dict[str, tuple[Any, str]]:
    """Top-level options, then each section's on top: ``{option: (value, source)}``."""
    merged: dict[str, tuple[Any, str]] = {}
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in document.items():
        if key not in sections:
            merged[key] = (value, TOP_LEVEL)
        elif isinstance(value, Mapping):
            tables.append((key, value))
        else:
            raise SettingsError(key, TOP_LEVEL, "must be a table")
    tables.sort(key=lambda table: sections.index(table[0]))
    for name, table in tables:
        merged.update((key, (value, f"[{name}]")) for key, value in table.items())
    return merged


def env_overrides(
    environ: Mapping[str, str], prefix: str, exclude: Collection[str] = ()
) -> dict[str, tuple[str, str]]:
    """``PREFIX_TLS_PORT=9001`` -> ``{"tls_port": ("9001", "PREFIX_TLS_PORT")}``.

    Names in ``exclude`` (say, the variable naming the config file) are not options.
    """
    return {
        name[len(prefix) :].lower(): (value, name)
        for name, value in environ.items()
        if name.startswith(prefix) and name not in exclude
    }


def build_settings(
    cls: type[T],
    document: Mapping[str, Any],
    environ: Mapping[str, str],
    prefix: str,
    *,
    sections: Sequence[str] = (),
    exclude_env: Collection[str] = (),
    list_options: Optional[Collection[str]] = (),
) -> T:
    """``cls`` (a dataclass whose fields all have defaults) from ``document`` and ``environ``.

    ``list_options`` names the ``str`` options that accept a TOML list; None means all of
    them.  Whatever ``cls.__post_init__`` raises passes through unchanged.
    """
    kinds = _option_kinds(cls)
    values = merge_document(document, sections)
    values.update(env_overrides(environ, prefix, exclude_env))
    options: dict[str, Any] = {}
    for key, (value, source) in values.items():
        kind = kinds.get(key)
        if kind is None:
            raise SettingsError(key, source, "unknown option")
        joins = list_options is None or key in list_options
        options[key] = _coerce(key, source, kind, value, joins)
    return cls(**options)


def load_settings(
    cls: type[T],
    text: Optional[str],
    source: str,
    environ: Mapping[str, str],
    prefix: str,
    **options: Any,
) -> T:
    """:func:`build_settings` from TOML ``text`` (None: no file, all defaults) named ``source``."""
    document = {} if text is None else parse_toml(text, source)
    return build_settings(cls, document, environ, prefix, **options)


def range_error(
    settings: object,
    *,
    ports: Sequence[str] = (),
    port_zero_ok: bool = True,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
) -> Optional[tuple[str, str]]:
    """The first ``(option, reason)`` out of range, in the order given, or None.

    Port 0 asks the kernel for a free port (tests); ``port_zero_ok=False`` for a port dialled.
    """
    low = 0 if port_zero_ok else 1
    for key in ports:
        value = getattr(settings, key)
        if not low <= value <= MAX_PORT:
            return key, f"{value} is not a TCP port"
    for key in positive:
        if getattr(settings, key) <= 0:
            return key, "must be positive"
    for key in non_negative:
        if getattr(settings, key) < 0:
            return key, "must not be negative"
    return None


def postgres_conninfo(database_url: str) -> Optional[str]:
    """The libpq URL for a PostgreSQL ``database_url`` (driver part dropped); None otherwise."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in POSTGRES_SCHEMES:
        return None
    return f"postgresql://{rest}"


def sqlite_file(database_url: str, data_dir: str, default_file: str) -> Optional[Path]:
    """The SQLite file ``database_url`` names, relative paths under ``data_dir``; None if
    it is not a SQLite URL (the caller says so, naming DATABASE_URL_FORMS)."""
    if database_url == _SQLITE_WORD:
        return Path(data_dir) / default_file
    if database_url.startswith(_SQLITE_URL_PREFIX) and len(database_url) > len(_SQLITE_URL_PREFIX):
        path = Path(database_url[len(_SQLITE_URL_PREFIX) :])
        return path if path.is_absolute() else Path(data_dir) / path
    return None


def _option_kinds(cls: type[Any]) -> dict[str, type]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    kinds: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        kind = type(f.default)
        if kind not in _SCALAR_KINDS:
            raise TypeError(f"{cls.__name__}.{f.name} needs a str/int/float/bool default")
        kinds[f.name] = kind
    return kinds


def _coerce(key: str, source: str, kind: type, value: Any, joins_lists: bool) -> Any:
    if isinstance(value, list) and kind is str and joins_lists:
        return ",".join(str(v) for v in value)
    if kind is bool and isinstance(value, str):
        word = value.lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise SettingsError(key, source, "expected true or false")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and kind is not str:
        try:
            return kind(value)
        except ValueError as exc:
            raise SettingsError(key, source, f"expected {kind.__name__}") from exc
    if type(value) is not kind:
        got = type(value).__name__
        raise SettingsError(key, source, f"expected {kind.__name__}, got {got}")
    return value
