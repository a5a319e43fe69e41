"""Command line of ``limelet-verifier``: ``limelet-verifier [-c CONFIG] [--check-config]``.

The config is TOML (verifier_lite/config.py) with ``LIMELET_VERIFIER_*`` overrides.  The
service runs until SIGINT or SIGTERM, which stop it gracefully: Hypercorn drains open requests
for ``shutdown_grace_seconds``, then polling stops (service_kit/cli.py, service_kit/listen.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Optional

import trio

from attest_protocol.cli import base_parser
from service_kit.cli import add_config_arguments, run_until_signal, service_main
from verifier_lite.config import VerifierConfig, load_config
from verifier_lite.errors import VerifierError
from verifier_lite.server import POSTGRES_URL_START, BoundPort, serve_verifier

log = logging.getLogger("limelet.verifier")


def _banner(bound: BoundPort) -> str:
    return f"limelet-verifier: mTLS {bound.port}"


def _checked_config(path: Optional[Path]) -> VerifierConfig:
    config = load_config(path)
    if not config.database_url.startswith(POSTGRES_URL_START):
        config.sqlite_path()  # a database_url we cannot open is a configuration error
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        "limelet-verifier",
        "the limelet verifier: continuously attests agents (Keylime verifier API)",
    )
    add_config_arguments(parser)
    return service_main(
        parser,
        argv,
        load_config=_checked_config,
        run=lambda config: trio.run(
            run_until_signal, partial(serve_verifier, config), _banner, log
        ),
        errors=(VerifierError,),
    )


if __name__ == "__main__":
    sys.exit(main())
