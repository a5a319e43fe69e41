"""A service's ``main``: configuration, exit statuses, logging, and the signal loop.

``service_main`` parses the command line, loads the configuration and runs the service's
``trio.run``; ``run_until_signal`` is that root: it starts the service, prints its one-line
banner, and on SIGTERM or SIGINT asks it to stop gracefully (service_kit/listen.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Sequence
from functools import partial
from pathlib import Path
from typing import Callable, Optional, TypeVar

import trio

from attest_protocol.cli import base_parser
from service_kit.jsonlog import LOG_FORMATS, configure_logging
from service_kit.settings import DatabaseMixin

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

# Exit statuses of the service commands (limelet-registrar, limelet-verifier): 0 after a clean
# shutdown or a good --check-config, 1 when the service cannot start (a port in use, a bad
# certificate), 2 when the configuration is refused before anything starts.
EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_CONFIG = 2
SERVICE_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

ConfigT = TypeVar("ConfigT")
BoundT = TypeVar("BoundT")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c/--config FILE`` (TOML) and ``--check-config``, as every service takes them."""
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text, or one JSON object a line (default: the config's log_format, else text)",
    )


def log_format(flag: Optional[str], config: object) -> str:
    """The flag when given, else the config's ``log_format`` key (both services have one,
    checked against LOG_FORMATS when the config is built), else text."""
    if flag is not None:
        return flag
    return str(getattr(config, "log_format", "text"))


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

    ``errors`` are the component's own: raised by ``load_config`` (or by a ``database_url``
    that names no database we can open) they are a configuration
    error (EXIT_CONFIG); alone in the group ``run`` raises, like an OSError from binding,
    they are a start-up failure (EXIT_START_FAILED).  Anything else propagates unchanged:
    a bug keeps its traceback, and Cancelled or KeyboardInterrupt are not ours to eat.
    """
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if isinstance(config, DatabaseMixin):
            config.check_database()
    except errors as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"{parser.prog}: configuration OK")
        return EXIT_OK
    configure_logging(log_format(getattr(args, "log_format", None), config), SERVICE_LOG_FORMAT)
    try:
        run(config)
    except BaseExceptionGroup as group:
        cause = single_error(group)
        if not isinstance(cause, (*errors, OSError)):  # ssl.SSLError is an OSError
            raise
        print(f"{parser.prog}: cannot start: {cause}", file=sys.stderr)
        return EXIT_START_FAILED
    return EXIT_OK


async def run_until_signal(
    serve: Callable[..., Awaitable[None]],
    banner: Callable[[BoundT], str],
    log: logging.Logger,
) -> None:
    """Start ``serve(shutdown=event, task_status=...)``, print ``banner(bound)``, and on the
    first SIGTERM or SIGINT set ``event`` and wait for the service to drain and return."""
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            bound = await nursery.start(partial(serve, shutdown=shutdown))
            print(banner(bound), flush=True)
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                shutdown.set()
                break


def run_service(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    load_config: Callable[[Optional[Path]], ConfigT],
    serve: Callable[..., Awaitable[None]],
    banner: Callable[[BoundT], str],
    errors: tuple[type[Exception], ...],
) -> int:
    """A service's whole ``main``: ``serve(config, shutdown=..., task_status=...)`` under
    ``run_until_signal``, logging to ``limelet.<name>`` where ``prog`` is ``limelet-<name>``."""
    parser = base_parser(prog, description)
    add_config_arguments(parser)
    log = logging.getLogger(prog.replace("-", ".", 1))
    return service_main(
        parser,
        argv,
        load_config=load_config,
        run=lambda config: trio.run(run_until_signal, partial(serve, config), banner, log),
        errors=errors,
    )
