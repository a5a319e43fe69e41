"""Command line of ``limelet-registrar``: ``limelet-registrar [-c CONFIG] [--check-config]``.

The config is TOML (registrar_lite/config.py) with ``LIMELET_REGISTRAR_*`` overrides.  The
service runs until SIGINT or SIGTERM, which stop it gracefully: Hypercorn drains open
requests for ``shutdown_grace_seconds`` (service_kit/cli.py, service_kit/listen.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from registrar_lite.config import load_config
from registrar_lite.errors import RegistrarError
from registrar_lite.server import BoundPorts, serve_registrar
from service_kit.cli import run_service


def _banner(ports: BoundPorts) -> str:
    return f"limelet-registrar: http {ports.port}, mTLS {ports.tls_port}"


def main(argv: Sequence[str] | None = None) -> int:
    return run_service(
        argv,
        prog="limelet-registrar",
        description="the limelet registrar: enrols agent TPM identities (Keylime registrar API)",
        load_config=load_config,
        serve=serve_registrar,
        banner=_banner,
        errors=(RegistrarError,),
    )


if __name__ == "__main__":
    sys.exit(main())
