"""What both services' configurations share: the listener's defaults, reading the TOML file
with its environment overrides, and the SQLite file a ``database_url`` names.

Option names and files are Keylime's (``registrar.conf``/``verifier.conf``: ``server_cert``,
``server_key``, ``trusted_client_ca`` relative to ``tls_dir``); attest_protocol/settings.py
types and checks the values, each service's config.py declares its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Optional, TypeVar

from attest_protocol.settings import (
    DATABASE_URL_FORMS,
    SettingsError,
    load_settings,
    postgres_conninfo,
    range_error,
    sqlite_file,
)
from service_kit.jsonlog import LOG_FORMATS

DEFAULT_IP = "127.0.0.1"
DEFAULT_DATABASE_URL = "sqlite"
# Keylime's file names inside tls_dir.
DEFAULT_SERVER_CERT = "server-cert.crt"
DEFAULT_SERVER_KEY = "server-private.pem"
DEFAULT_TRUSTED_CLIENT_CA = "cacert.crt"
# CVE-2023-38200: a client that opens TCP and never finishes the TLS handshake, or never
# finishes a request, is dropped after these many seconds.
DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
DEFAULT_KEEP_ALIVE_SECONDS = 5.0
# How long open requests may take to finish after SIGTERM (service_kit/listen.py).
DEFAULT_SHUTDOWN_GRACE_SECONDS = 2.0

ConfigT = TypeVar("ConfigT")
# A service's ConfigError(key, reason).
ConfigErrorFactory = Callable[[str, str], Exception]


def read_config(
    cls: type[ConfigT],
    path: Optional[Path],
    environ: Mapping[str, str],
    *,
    env_prefix: str,
    sections: tuple[str, ...],
    config_error: ConfigErrorFactory,
    list_options: tuple[str, ...] = (),
) -> ConfigT:
    """Read ``path`` (TOML; absent means all defaults), then apply the environment; every
    problem is ``config_error(key, reason)`` naming the option (or the file)."""
    try:
        text = None if path is None else path.read_text(encoding="utf-8")
        return load_settings(
            cls, text, str(path), environ, env_prefix, sections=sections, list_options=list_options
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise config_error(str(path), f"cannot be read as TOML: {exc}") from exc
    except SettingsError as exc:
        raise config_error(exc.key, exc.detail) from exc


def sqlite_path(
    database_url: str, data_dir: str, default_file: str, config_error: ConfigErrorFactory
) -> Path:
    """The database file named by ``database_url`` (SQLite's forms only)."""
    path = sqlite_file(database_url, data_dir, default_file)
    if path is None:
        raise config_error("database_url", DATABASE_URL_FORMS)
    return path


class DatabaseMixin:
    """``database_url`` read the way both services read it: a PostgreSQL URL, or SQLite's
    forms resolved against ``data_dir`` with the service's default file name (Keylime's
    ``reg_data.sqlite`` / ``cv_data.sqlite``).  Mixed into each service's config dataclass."""

    database_url: str
    data_dir: str
    sqlite_default_file: ClassVar[str]
    config_error: ClassVar[type[Exception]]  # the service's ConfigError(key, reason)

    @property
    def uses_postgres(self) -> bool:
        return postgres_conninfo(self.database_url) is not None

    def sqlite_path(self) -> Path:
        """The database file named by ``database_url`` when it names SQLite."""
        return sqlite_path(
            self.database_url, self.data_dir, self.sqlite_default_file, self.config_error
        )

    def check_database(self) -> None:
        """A ``database_url`` we cannot open is a configuration error, found before start."""
        if not self.uses_postgres:
            self.sqlite_path()


class TlsFilesMixin:
    """``server_cert``, ``server_key`` and ``trusted_client_ca`` resolved against the
    service's ``tls_path`` (an absolute path wins), as Keylime resolves them against its
    ``tls_dir``.  Mixed into each service's frozen config dataclass."""

    server_cert: str
    server_key: str
    trusted_client_ca: str

    @property
    def tls_path(self) -> Path:
        raise NotImplementedError

    def tls_file(self, value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else self.tls_path / value

    @property
    def server_cert_path(self) -> Path:
        return self.tls_file(self.server_cert)

    @property
    def server_key_path(self) -> Path:
        return self.tls_file(self.server_key)

    @property
    def trusted_client_ca_path(self) -> Path:
        return self.tls_file(self.trusted_client_ca)


@dataclass(frozen=True)
class ServiceConfig(TlsFilesMixin, DatabaseMixin):
    """The options both services take, under Keylime's names where Keylime has them; each
    service's config dataclass adds its own (and its own ``data_dir`` default) and calls
    ``check_service_options`` from its ``__post_init__``."""

    ip: str = DEFAULT_IP
    data_dir: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    server_cert: str = DEFAULT_SERVER_CERT
    server_key: str = DEFAULT_SERVER_KEY
    trusted_client_ca: str = DEFAULT_TRUSTED_CLIENT_CA
    handshake_timeout_seconds: float = DEFAULT_HANDSHAKE_TIMEOUT_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    keep_alive_seconds: float = DEFAULT_KEEP_ALIVE_SECONDS
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    log_format: str = "text"  # or "json"; the --log-format flag wins (service_kit/cli.py)

    def check_service_options(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise self.config_error("log_format", f"expected one of {list(LOG_FORMATS)}")
        bad = range_error(
            self, ports=(), positive=("handshake_timeout_seconds", "read_timeout_seconds")
        )
        if bad is not None:
            raise self.config_error(*bad)
