"""The tenant's configuration: a TOML file, then ``LIMELET_TENANT_*`` overrides.

Option names follow Keylime's ``[tenant]`` section (keylime templates 2.6 ``tenant.j2``) so
settings carry over: ``verifier_ip``, ``verifier_port``, ``registrar_ip``, ``tls_dir``,
``client_cert``, ``client_key``, ``trusted_server_ca``, ``tpm_cert_store``,
``require_ek_cert``, ``ek_check_script``, ``max_payload_size``, ``accept_tpm_*_algs``,
``max_retries``, ``retry_interval``, ``request_timeout``. One difference: Keylime's
``registrar_port`` is the registrar's *TLS* port; here ``registrar_tls_port`` is that port and
``registrar_port`` the plain one, as in the registrar's own config. Every tenant call to the
registrar is an admin call, so only ``registrar_tls_port`` is dialled.

The file may hold the options at top level or under ``[tenant]``; an unknown key is an error
naming it. Relative certificate paths resolve against ``tls_dir``, as in Keylime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attest_protocol.settings import SettingsError, load_settings, range_error
from tenant_lite.errors import ConfigError

ENV_PREFIX = "LIMELET_TENANT_"
# The environment variable that names the config file when -c is not given.
CONFIG_ENV = "LIMELET_TENANT_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/limelet/tenant.toml")
DEFAULT_IP = "127.0.0.1"
# Keylime's defaults: verifier 8881; registrar 8890 plain, 8891 mTLS.
DEFAULT_VERIFIER_PORT = 8881
DEFAULT_REGISTRAR_PORT = 8890
DEFAULT_REGISTRAR_TLS_PORT = 8891
# Keylime's tls_dir = "default" for the tenant is the verifier's CA directory, KEYLIME_DIR/cv_ca.
DEFAULT_TLS_DIR = "/var/lib/keylime/cv_ca"
DEFAULT_CLIENT_CERT = "client-cert.crt"
DEFAULT_CLIENT_KEY = "client-private.pem"
DEFAULT_TRUSTED_SERVER_CA = "cacert.crt"
DEFAULT_TPM_CERT_STORE = "/var/lib/keylime/tpm_cert_store"
# Keylime tenant.conf: max_payload_size = 1048576 (bytes of encrypted payload).
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0
# Keylime tenant.conf max_retries/retry_interval: how often add waits for the verifier to
# list the agent and for the agent to derive K before --verify gives up.
DEFAULT_MAX_RETRIES = 10
DEFAULT_RETRY_INTERVAL_SECONDS = 1.0
# Keylime's accept_tpm_*_algs defaults, plus ecdsa: limelet agents may use ECC AKs.
DEFAULT_HASH_ALGS = "sha512,sha384,sha256"
DEFAULT_ENCRYPTION_ALGS = "ecc,rsa"
DEFAULT_SIGNING_ALGS = "ecschnorr,rsassa,ecdsa"


@dataclass(frozen=True)
class TenantConfig:
    verifier_ip: str = DEFAULT_IP
    verifier_port: int = DEFAULT_VERIFIER_PORT
    registrar_ip: str = DEFAULT_IP
    registrar_port: int = DEFAULT_REGISTRAR_PORT
    registrar_tls_port: int = DEFAULT_REGISTRAR_TLS_PORT
    tls_dir: str = DEFAULT_TLS_DIR
    client_cert: str = DEFAULT_CLIENT_CERT
    client_key: str = DEFAULT_CLIENT_KEY
    trusted_server_ca: str = DEFAULT_TRUSTED_SERVER_CA
    # Directory of EK issuer CA certificates (PEM or DER) that add checks EK certificates with.
    tpm_cert_store: str = DEFAULT_TPM_CERT_STORE
    require_ek_cert: bool = True
    ek_check_script: str = ""
    max_payload_size: int = DEFAULT_MAX_PAYLOAD_BYTES
    accept_tpm_hash_algs: str = DEFAULT_HASH_ALGS
    accept_tpm_encryption_algs: str = DEFAULT_ENCRYPTION_ALGS
    accept_tpm_signing_algs: str = DEFAULT_SIGNING_ALGS
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_interval: float = DEFAULT_RETRY_INTERVAL_SECONDS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        bad = range_error(
            self,
            ports=("verifier_port", "registrar_port", "registrar_tls_port"),
            port_zero_ok=False,
            positive=("max_payload_size", "request_timeout", "max_retries"),
            non_negative=("retry_interval",),
        )
        if bad is not None:
            raise ConfigError(*bad)

    def tls_path(self, value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else Path(self.tls_dir) / value

    @property
    def verifier_address(self) -> str:
        return f"{self.verifier_ip}:{self.verifier_port}"

    @property
    def registrar_address(self) -> str:
        return f"{self.registrar_ip}:{self.registrar_tls_port}"

    def algs(self, kind: str) -> frozenset[str]:
        """``kind`` is hash, encryption or signing: the accepted names, lower case."""
        text: str = getattr(self, f"accept_tpm_{kind}_algs")
        return frozenset(a.strip().lower() for a in text.split(",") if a.strip())


def config_path(explicit: Optional[str], environ: Mapping[str, str]) -> Optional[Path]:
    """-c wins, then $LIMELET_TENANT_CONFIG, then /etc/limelet/tenant.toml if it exists."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_config(path: Optional[Path], environ: Mapping[str, str] = os.environ) -> TenantConfig:
    try:
        text = None if path is None else path.read_text(encoding="utf-8")
        # Every str option takes a TOML list (accept_tpm_*_algs), joined with commas.
        return load_settings(
            TenantConfig,
            text,
            str(path),
            environ,
            ENV_PREFIX,
            sections=("tenant",),
            exclude_env=(CONFIG_ENV,),
            list_options=None,
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read as TOML: {exc}") from exc
    except SettingsError as exc:
        raise ConfigError(exc.key, exc.detail) from exc
