"""Command-line scaffolding shared by the console scripts: argument parsers, and the part of
a service's ``main`` that knows nothing of trio (configuration, exit statuses, unwrapping the
exception group a failed start-up arrives in).  No I/O beyond argparse, logging set-up and
the one-line messages on stdout/stderr; the trio root (signals, nursery) stays with each
service.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional, TypeVar

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from attest_protocol import __version__
from attest_protocol.api_version import SUPPORTED_VERSIONS


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with ``--version`` printing the limelet release and the API versions served."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    apis = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    parser.add_argument(
        "--version",
        action="version",
        version=f"{prog} (limelet) {__version__}; Keylime REST API {apis}",
    )
    return parser


def parse_only(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse the arguments of a component whose service is not in this release yet.

    ``--help`` and ``--version`` work; anything else says plainly that there is no service to
    run yet, with exit status 1, instead of pretending to start one.
    """
    parser.parse_args(argv)
    print(f"{parser.prog}: this release provides only --help and --version", file=sys.stderr)
    return 1


# Exit statuses of the service commands (limelet-registrar, limelet-verifier): 0 after a clean
# shutdown or a good --check-config, 1 when the service cannot start (a port in use, a bad
# certificate), 2 when the configuration is refused before anything starts.
EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_CONFIG = 2
SERVICE_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

ConfigT = TypeVar("ConfigT")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c/--config FILE`` (TOML) and ``--check-config``, as every service takes them."""
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )


def single_error(exc: BaseException) -> BaseException:
    """The one error inside nested single-member groups (a nursery wraps start-up errors).

    A group of several errors is returned as it is: it is not one cause to report.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def service_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    load_config: Callable[[Optional[Path]], ConfigT],
    run: Callable[[ConfigT], object],
    errors: tuple[type[Exception], ...],
) -> int:
    """Parse, load the config, then ``run`` it (the component's ``trio.run`` of its root).

    ``errors`` are the component's own: raised by ``load_config`` they are a configuration
    error (EXIT_CONFIG); alone in the group ``run`` raises, like an OSError from binding,
    they are a start-up failure (EXIT_START_FAILED).  Anything else propagates unchanged:
    a bug keeps its traceback, and Cancelled or KeyboardInterrupt are not ours to eat.
    """
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except errors as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"{parser.prog}: configuration OK")
        return EXIT_OK
    logging.basicConfig(level=logging.INFO, format=SERVICE_LOG_FORMAT)
    try:
        run(config)
    except BaseExceptionGroup as group:
        cause = single_error(group)
        if not isinstance(cause, (*errors, OSError)):  # ssl.SSLError is an OSError
            raise
        print(f"{parser.prog}: cannot start: {cause}", file=sys.stderr)
        return EXIT_START_FAILED
    return EXIT_OK
