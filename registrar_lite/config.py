"""The registrar's configuration: a TOML file, then ``LIMELET_REGISTRAR_*`` overrides.

Option names are those of Keylime's ``[registrar]`` section (keylime/config templates 2.6,
``registrar.conf``) so an operator can carry settings over: ``ip``, ``port``, ``tls_port``,
``database_url``, ``tls_dir``, ``server_key``, ``server_cert``, ``trusted_client_ca``,
``tpm_cert_store``, ``data_dir``; plus limelet's timeouts and body limit.  The file may hold
them at top level or under ``[registrar]``.  An unknown key is an error that names it.

Relative certificate paths are resolved against ``tls_dir`` (itself against ``data_dir``), as
Keylime resolves them against its ``tls_dir``.  ``database_url = "sqlite"`` means
``<data_dir>/reg_data.sqlite`` (Keylime: ``KEYLIME_DIR/reg_data.sqlite``);
``postgresql://user@host:port/db`` (any ``+driver`` part is ignored: psycopg 3 is used) keeps
the registrations in PostgreSQL, e.g. beside verifiers that share one server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attest_protocol.settings import range_error
from registrar_lite.errors import ConfigError
from service_kit import settings as kit

ENV_PREFIX = "LIMELET_REGISTRAR_"
# Keylime's registrar defaults: 8890 plain HTTP (agents), 8891 mTLS (tenant, verifier).
DEFAULT_PORT = 8890
DEFAULT_TLS_PORT = 8891
DEFAULT_DATA_DIR = "/var/lib/limelet/registrar"
SQLITE_DEFAULT_FILE = "reg_data.sqlite"
DEFAULT_TLS_DIR = "cv_ca"
# A registration is a few kilobytes (EK cert, two public areas, an mTLS cert); 64 KiB leaves
# room for IAK/IDevID material and refuses anything meant to exhaust memory.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class RegistrarConfig(kit.ServiceConfig):
    """Keylime's ``[registrar]`` options beside those of kit.ServiceConfig."""

    sqlite_default_file = SQLITE_DEFAULT_FILE
    config_error = ConfigError

    port: int = DEFAULT_PORT
    tls_port: int = DEFAULT_TLS_PORT
    data_dir: str = DEFAULT_DATA_DIR
    tls_dir: str = DEFAULT_TLS_DIR
    # A directory of PEM/DER CA certificates; empty means EK certificates are not checked.
    tpm_cert_store: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        self.check_service_options()
        bad = range_error(self, ports=("port", "tls_port"), positive=("max_body_bytes",))
        if bad is not None:
            raise ConfigError(*bad)

    @property
    def tls_path(self) -> Path:
        return Path(self.data_dir) / self.tls_dir  # an absolute tls_dir wins in the join

    @property
    def tpm_cert_store_path(self) -> Optional[Path]:
        return Path(self.tpm_cert_store) if self.tpm_cert_store else None


def load_config(path: Optional[Path], environ: Mapping[str, str] = os.environ) -> RegistrarConfig:
    """Read ``path`` (TOML; absent means all defaults), then apply the environment."""
    return kit.read_config(
        RegistrarConfig,
        path,
        environ,
        env_prefix=ENV_PREFIX,
        sections=("registrar",),
        config_error=ConfigError,
    )
