"""The verifier's configuration: a TOML file, then ``LIMELET_VERIFIER_*`` overrides.

Option names are those of Keylime's ``[verifier]`` section (keylime/config templates 2.x,
``verifier.conf``) so an operator can carry settings over: ``uuid`` (this verifier's id),
``ip``, ``port``, ``registrar_ip``, ``registrar_port``, ``tls_dir``, ``server_key``,
``server_cert``, ``trusted_client_ca``, ``client_key``, ``client_cert``, ``database_url``,
``quote_interval``, ``retry_interval``, ``exponential_backoff``, ``max_retries``,
``request_timeout``, ``enable_agent_mtls``, ``measured_boot_policy_name``, and for push mode
``mode``, ``challenge_lifetime``, ``session_lifetime``,
``session_create_rate_limit_{per,window}_{ip,agent}`` (with limelet's
``push_ip``/``push_port``, docs/push-mode.md); from ``[revocations]``
``enabled_revocation_notifications`` (comma-separated or a list) and ``webhook_url``; plus
limelet's ``data_dir`` and limits.  The file may hold them at top level or under
``[verifier]`` / ``[revocations]``.  An unknown key is an error naming it.

``tls_dir = "generate"`` means ``<data_dir>/cv_ca``, filled at first start with a CA, a
server and a client certificate (verifier_lite/tls.py), as Keylime's verifier does.
Relative certificate paths are resolved against the TLS directory.  ``database_url =
"sqlite"`` means ``<data_dir>/cv_data.sqlite`` (Keylime: ``KEYLIME_DIR/cv_data.sqlite``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attest_protocol.mb import ACCEPT_ALL, POLICY_NAMES
from attest_protocol.settings import range_error
from service_kit import settings as kit
from verifier_lite import leases
from verifier_lite.errors import ConfigError
from verifier_lite.failures import SeverityConfigError, SeverityPolicy, load_severity_policy

ENV_PREFIX = "LIMELET_VERIFIER_"
GENERATE = "generate"
GENERATED_TLS_DIR = "cv_ca"
# Keylime's verifier.conf defaults.
DEFAULT_UUID = "default"
DEFAULT_IP = kit.DEFAULT_IP
DEFAULT_PORT = 8881
DEFAULT_REGISTRAR_PORT = 8891
DEFAULT_DATA_DIR = "/var/lib/limelet/verifier"
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
# verifier.conf 7.14.3: JSON texts, as Keylime reads them (keylime/failure.py).
DEFAULT_SEVERITY_LABELS = '["info", "notice", "warning", "error", "critical", "alert", "emergency"]'
DEFAULT_SEVERITY_POLICY = '[{"event_id": ".*", "severity_label": "emergency"}]'
# The status page (verifier_lite/status_page.py): off unless given a loopback ip:port, e.g.
# "127.0.0.1:8882" (plain HTTP, so never on an address other hosts reach).
DEFAULT_STATUS_PAGE_ADDRESS = ""
# pull: push agents only when enrolled without an address (or marked push_model); mixed: also
# an enrolment with no V and no agent mTLS certificate (keylime_tenant --push-model); push:
# every enrolment (Keylime's mode = push).  verifier_lite/push/enrol.py.
PUSH_MODES = ("pull", "mixed", "push")


@dataclass(frozen=True)
class VerifierConfig(kit.ServiceConfig):
    """Keylime's ``[verifier]`` and ``[revocations]`` options beside kit.ServiceConfig's."""

    sqlite_default_file = SQLITE_DEFAULT_FILE
    config_error = ConfigError

    uuid: str = DEFAULT_UUID
    port: int = DEFAULT_PORT
    registrar_ip: str = DEFAULT_IP
    registrar_port: int = DEFAULT_REGISTRAR_PORT
    data_dir: str = DEFAULT_DATA_DIR
    tls_dir: str = GENERATE
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
    # Keylime's [verifier] runtime-policy signature and severity options (verifier.conf).
    require_allow_list_signatures: bool = False
    severity_labels: str = DEFAULT_SEVERITY_LABELS
    severity_policy: str = DEFAULT_SEVERITY_POLICY
    status_page_address: str = DEFAULT_STATUS_PAGE_ADDRESS
    # Keylime's [verifier] measured_boot_policy_name: accept-all (its default), reject-all,
    # example, or limelet's limelet-pcrs (verifier_lite/measured_boot.py).
    measured_boot_policy_name: str = ACCEPT_ALL

    # Push mode (API 3.0; verifier_lite/push/, docs/push-mode.md).  Keylime's [verifier]
    # names and defaults; ``mode`` is per agent here (push/enrol.py), and ``push_port`` is
    # limelet's listener for agents, which present no client certificate (-1: none).
    mode: str = "pull"
    push_ip: str = DEFAULT_IP
    push_port: int = -1
    challenge_lifetime: float = 1800.0
    session_lifetime: float = 180.0
    session_create_rate_limit_per_ip: int = 50
    session_create_rate_limit_window_ip: float = 60.0
    session_create_rate_limit_per_agent: int = 15
    session_create_rate_limit_window_agent: float = 60.0
    # Several verifiers on one PostgreSQL database share the fleet by leases (leases.py);
    # lease_seconds = 0 keeps Keylime's static split by verifier_id (uuid).
    lease_seconds: float = leases.DEFAULT_LEASE_SECONDS
    lease_renew_seconds: float = leases.DEFAULT_LEASE_RENEW_SECONDS
    lease_margin_seconds: float = leases.DEFAULT_LEASE_MARGIN_SECONDS
    # Throughput levers (verifier_lite/write_batch.py, poller.py): good quotes' counters are
    # written every counter_flush_seconds (0: at once); at most max_in_flight quote requests
    # and checks at once (0: no fixed cap); when the event loop runs in_flight_lag_ms late,
    # fewer start, so the admin API keeps answering (lag_governor.py; 0: off).
    counter_flush_seconds: float = 1.0
    max_in_flight: int = 0
    in_flight_lag_ms: float = 12.0

    def __post_init__(self) -> None:
        self._check_push_options()
        self._check_status_page()
        self.check_service_options()
        bad = range_error(
            self,
            ports=("port", "registrar_port"),
            positive=("request_timeout", "max_body_bytes"),
            non_negative=(
                "quote_interval",
                "retry_interval",
                "max_retries",
                "counter_flush_seconds",
                "max_in_flight",
                "in_flight_lag_ms",
            ),
        )
        if bad is not None:
            raise ConfigError(*bad)
        if not self.uuid:
            raise ConfigError("uuid", "must not be empty")
        self.severity  # noqa: B018 - a bad severity option is an error at start-up
        unknown = self.revocation_notifiers - {"agent", "webhook"}
        if unknown:
            raise ConfigError("enabled_revocation_notifications", f"unknown: {sorted(unknown)}")
        if self.measured_boot_policy_name not in POLICY_NAMES:
            raise ConfigError("measured_boot_policy_name", f"must be one of {list(POLICY_NAMES)}")
        if "webhook" in self.revocation_notifiers and not self.webhook_url:
            raise ConfigError("webhook_url", "required when 'webhook' notifications are enabled")
        self._check_leases()

    def _check_leases(self) -> None:
        if self.lease_seconds < 0:
            raise ConfigError("lease_seconds", "must be >= 0 (0: no leases)")
        times = leases.LeaseTimes(
            self.lease_seconds, self.lease_renew_seconds, self.lease_margin_seconds
        )
        bad = times.problem() if self.lease_seconds > 0 else None
        if bad is not None:
            raise ConfigError(*bad)

    @property
    def shares_fleet(self) -> bool:
        """Several verifiers divide the agents by leases: PostgreSQL and lease_seconds > 0."""
        return self.uses_postgres and self.lease_seconds > 0

    def _check_status_page(self) -> None:
        if self.status_page_address:
            status_page_host_port(self.status_page_address)

    @property
    def severity(self) -> SeverityPolicy:
        """``severity_labels`` and ``severity_policy`` (JSON texts, as in verifier.conf)."""
        try:
            return load_severity_policy(self.severity_labels, self.severity_policy)
        except SeverityConfigError as exc:
            raise ConfigError(exc.option, exc.reason) from None

    def _check_push_options(self) -> None:
        if self.mode not in PUSH_MODES:
            raise ConfigError("mode", f"must be one of {', '.join(PUSH_MODES)}")
        if not -1 <= self.push_port <= 65535:
            raise ConfigError("push_port", "must be a TCP port, 0 for any, or -1 for none")
        positive = (
            "challenge_lifetime",
            "session_lifetime",
            "session_create_rate_limit_per_ip",
            "session_create_rate_limit_window_ip",
            "session_create_rate_limit_per_agent",
            "session_create_rate_limit_window_agent",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(name, "must be positive")

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


def status_page_host_port(address: str) -> tuple[str, int]:
    """``"127.0.0.1:8882"`` or ``"[::1]:8882"`` as (ip, port); ConfigError unless the ip
    is a loopback address: the page is plain HTTP without client authentication."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
        number = int(port)
    except ValueError:
        loopback, number = False, -1
    if not sep or not loopback:
        raise ConfigError("status_page_address", "must be a loopback ip:port, e.g. 127.0.0.1:8882")
    if not 0 <= number <= 65535:
        raise ConfigError("status_page_address", "port must be 0-65535")
    return host, number


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
