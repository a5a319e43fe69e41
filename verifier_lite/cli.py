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

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from attest_protocol.cli import base_parser
from verifier_lite.config import VerifierConfig, load_config
from verifier_lite.errors import VerifierError
from verifier_lite.server import serve_verifier

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        "limelet-verifier",
        "the limelet verifier: continuously attests agents (Keylime verifier API)",
    )
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        config.sqlite_path()
    except VerifierError as exc:
        print(f"limelet-verifier: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("limelet-verifier: configuration OK")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        trio.run(partial(_run, config))
    except BaseExceptionGroup as group:
        cause = _single(group)
        if not isinstance(cause, (VerifierError, OSError)):  # ssl.SSLError is an OSError
            raise
        print(f"limelet-verifier: cannot start: {cause}", file=sys.stderr)
        return 1
    return 0


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested single-member groups (the nursery wraps start-up errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
