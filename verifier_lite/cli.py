"""Command line of ``limelet-verifier``: ``limelet-verifier [-c CONFIG] [--check-config]``.

The config is TOML (verifier_lite/config.py) with ``LIMELET_VERIFIER_*`` overrides.  The
service runs until SIGINT or SIGTERM, which stop it gracefully: Hypercorn drains open requests
for ``shutdown_grace_seconds``, then polling stops (service_kit/cli.py, service_kit/listen.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from service_kit.cli import run_service
from verifier_lite.config import load_config
from verifier_lite.errors import VerifierError
from verifier_lite.server import BoundPort, serve_verifier


def _banner(bound: BoundPort) -> str:
    if bound.status_url is not None:
        return f"limelet-verifier: mTLS {bound.port}, status page {bound.status_url}"
    return f"limelet-verifier: mTLS {bound.port}"


def main(argv: Sequence[str] | None = None) -> int:
    return run_service(
        argv,
        prog="limelet-verifier",
        description="the limelet verifier: continuously attests agents (Keylime verifier API)",
        load_config=load_config,
        serve=serve_verifier,
        banner=_banner,
        errors=(VerifierError,),
    )


if __name__ == "__main__":
    sys.exit(main())
