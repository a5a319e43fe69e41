"""The verifier's configuration: a TOML file, then ``LIMELET_VERIFIER_*`` overrides.

Option names are those of Keylime's ``[verifier]`` section (keylime/config templates 2.x,
``verifier.conf``) so an operator can carry settings over: ``uuid`` (this verifier's id),
``ip``, ``port``, ``registrar_ip``, ``registrar_port``, ``tls_dir``, ``server_key``,
``server_cert``, ``trusted_client_ca``, ``client_key``, ``client_cert``, ``database_url``,
``quote_interval``, ``retry_interval``, ``exponential_backoff``, ``max_retries``,
``request_timeout``, ``enable_agent_mtls``; from ``[revocations]``
``enabled_revocation_notifications`` (comma-separated or a list) and ``webhook_url``; plus
limelet's ``data_dir`` and limits.  The file may hold them at top level or under
``[verifier]`` / ``[revocations]``.  An unknown key is an error naming it.

``tls_dir = "generate"`` means ``<data_dir>/cv_ca``, filled at first start with a CA, a
server and a client certificate (verifier_lite/tls.py), as Keylime's verifier does.
Relative certificate paths are resolved against the TLS directory.  ``database_url =
"sqlite"`` means ``<data_dir>/cv_data.sqlite`` (Keylime: ``KEYLIME_DIR/cv_data.sqlite``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attest_protocol.settings import range_error
from service_kit import settings as kit
from verifier_lite.errors import ConfigError

ENV_PREFIX = "LIMELET_VERIFIER_"
GENERATE = "generate"
GENERATED_TLS_DIR = "cv_ca"
# Keylime's verifier.conf defaults.
DEFAULT_UUID = "default"
DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 8881
DEFAULT_REGISTRAR_PORT = 8891
DEFAULT_DATA_DIR = "/var/lib/limelet/verifier"
DEFAULT_DATABASE_URL = "sqlite"
SQLITE_DEFAULT_FILE = "cv_data.sqlite"
DEFAULT_CLIENT_CERT = "client-cert.crt"
DEFAULT_CLIENT_KEY = "client-private.pem"
DEFAULT_QUOTE_INTERVAL_SECONDS = 2.0
DEFAULT_RETRY_INTERVAL_SECONDS = 2.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0
# A runtime policy may be tens of MiB (Keylime caps at its tornado default of 100 MiB);
# 16 MiB covers a full distribution allowlist and bounds memory per request.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifierConfig(kit.TlsFilesMixin):
    uuid: str = DEFAULT_UUID
    ip: str = DEFAULT_IP
    port: int = DEFAULT_PORT
    registrar_ip: str = DEFAULT_IP
    registrar_port: int = DEFAULT_REGISTRAR_PORT
    data_dir: str = DEFAULT_DATA_DIR
    database_url: str = DEFAULT_DATABASE_URL
    tls_dir: str = GENERATE
    server_cert: str = kit.DEFAULT_SERVER_CERT
    server_key: str = kit.DEFAULT_SERVER_KEY
    trusted_client_ca: str = kit.DEFAULT_TRUSTED_CLIENT_CA
    client_cert: str = DEFAULT_CLIENT_CERT
    client_key: str = DEFAULT_CLIENT_KEY
    enable_agent_mtls: bool = True
    quote_interval: float = DEFAULT_QUOTE_INTERVAL_SECONDS
    retry_interval: float = DEFAULT_RETRY_INTERVAL_SECONDS
    exponential_backoff: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    # Keylime's [revocations] options: a comma-separated subset of "agent", "webhook".
    enabled_revocation_notifications: str = ""
    webhook_url: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    handshake_timeout_seconds: float = kit.DEFAULT_HANDSHAKE_TIMEOUT_SECONDS
    read_timeout_seconds: float = kit.DEFAULT_READ_TIMEOUT_SECONDS
    keep_alive_seconds: float = kit.DEFAULT_KEEP_ALIVE_SECONDS
    shutdown_grace_seconds: float = kit.DEFAULT_SHUTDOWN_GRACE_SECONDS
    # Throughput levers (verifier_lite/write_batch.py, poller.py): good quotes' counters are
    # written every counter_flush_seconds (0: at once); at most max_in_flight quote requests
    # and checks at once (0: no cap).
    counter_flush_seconds: float = 1.0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        positive = ("request_timeout", "max_body_bytes", "handshake_timeout_seconds")
        bad = range_error(
            self,
            ports=("port", "registrar_port"),
            positive=(*positive, "read_timeout_seconds"),
            non_negative=(
                "quote_interval",
                "retry_interval",
                "max_retries",
                "counter_flush_seconds",
                "max_in_flight",
            ),
        )
        if bad is not None:
            raise ConfigError(*bad)
        if not self.uuid:
            raise ConfigError("uuid", "must not be empty")
        unknown = self.revocation_notifiers - {"agent", "webhook"}
        if unknown:
            raise ConfigError("enabled_revocation_notifications", f"unknown: {sorted(unknown)}")
        if "webhook" in self.revocation_notifiers and not self.webhook_url:
            raise ConfigError("webhook_url", "required when 'webhook' notifications are enabled")

    @property
    def revocation_notifiers(self) -> frozenset[str]:
        return frozenset(
            n.strip() for n in self.enabled_revocation_notifications.split(",") if n.strip()
        )

    @property
    def tls_path(self) -> Path:
        name = GENERATED_TLS_DIR if self.tls_dir == GENERATE else self.tls_dir
        return Path(self.data_dir) / name  # an absolute tls_dir wins in the join

    @property
    def generates_tls(self) -> bool:
        return self.tls_dir == GENERATE

    @property
    def client_cert_path(self) -> Path:
        return self.tls_file(self.client_cert)

    @property
    def client_key_path(self) -> Path:
        return self.tls_file(self.client_key)

    def sqlite_path(self) -> Path:
        """The database file named by ``database_url`` (only SQLite is implemented)."""
        return kit.sqlite_path(self.database_url, self.data_dir, SQLITE_DEFAULT_FILE, ConfigError)


def load_config(path: Optional[Path], environ: Mapping[str, str] = os.environ) -> VerifierConfig:
    """Read ``path`` (TOML; absent means all defaults), then apply the environment."""
    return kit.read_config(
        VerifierConfig,
        path,
        environ,
        env_prefix=ENV_PREFIX,
        sections=("verifier", "revocations"),
        config_error=ConfigError,
        list_options=("enabled_revocation_notifications",),
    )
