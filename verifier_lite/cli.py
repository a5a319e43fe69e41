"""Command line of ``limelet-verifier``: ``limelet-verifier [-c CONFIG] [--check-config]``.

The config is TOML (verifier_lite/config.py) with ``LIMELET_VERIFIER_*`` overrides.  The
service runs until SIGINT or SIGTERM, which cancel the root scope; Hypercorn then drains open
requests for ``shutdown_grace_seconds``.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Optional

import trio

from attest_protocol.cli import add_config_arguments, base_parser, service_main
from verifier_lite.config import VerifierConfig, load_config
from verifier_lite.errors import VerifierError
from verifier_lite.server import POSTGRES_URL_START, serve_verifier

log = logging.getLogger("limelet.verifier")


async def _run(config: VerifierConfig) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            bound = await nursery.start(serve_verifier, config)
            print(f"limelet-verifier: mTLS {bound.port}", flush=True)
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


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
        run=lambda config: trio.run(partial(_run, config)),
        errors=(VerifierError,),
    )


if __name__ == "__main__":
    sys.exit(main())
