"""Command line of ``limelet-agent``.

``limelet-agent``                 run the agent until SIGTERM or SIGINT (exit status 0): the
                                  server drains for up to SHUTDOWN_GRACE_SECONDS, then
                                  whatever is left is cancelled
``limelet-agent --check-config``  print the effective configuration and exit 0, or the
                                  error and exit 1 (secrets are shown only as "<set>")

A configuration, TPM, key or registrar error at start-up is printed as one line and exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import trio

from attest_protocol.cli import base_parser
from edge_agent.app import SHUTDOWN_GRACE_SECONDS, run_agent
from edge_agent.config import AgentConfig, ConfigError, config_files, load_config
from edge_agent.config.loader import DEFAULT_PATHS
from edge_agent.ima import ImaReaderError
from edge_agent.keys import AgentKeyError
from edge_agent.payload import PayloadError
from edge_agent.registrar_client import RegistrarError
from edge_agent.tpm import TpmError

if sys.version_info < (3, 11):  # pragma: no cover - Python < 3.11 only
    from exceptiongroup import BaseExceptionGroup

__all__ = ["main"]

log = logging.getLogger("edge_agent")

EXIT_OK = 0
EXIT_FAILURE = 1
# What stops the agent with a message rather than a traceback.
_FATAL = (ConfigError, TpmError, AgentKeyError, RegistrarError, PayloadError, ImaReaderError)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        "limelet-agent", "the limelet edge agent: serves the Keylime agent API from a TPM"
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective configuration (no secrets) and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"limelet-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.check_config:
        print(render_config(config))
        return EXIT_OK
    try:
        trio.run(_serve, config)
    except BaseExceptionGroup as group:
        fatal = list(_leaves(group))
        if not all(isinstance(leaf, _FATAL) for leaf in fatal):
            raise
        for leaf in fatal:
            print(f"limelet-agent: {leaf}", file=sys.stderr)
        return EXIT_FAILURE
    except _FATAL as exc:
        print(f"limelet-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def render_config(config: AgentConfig) -> str:
    """The effective configuration as an agent.conf, with the files it came from."""
    lines = [f"# read: {path}" for path in config_files(DEFAULT_PATHS, os.environ)]
    lines.append("[agent]")
    for name, value in config.display().items():
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines)


async def _serve(config: AgentConfig) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, stop, nursery.cancel_scope)
        await run_agent(config, stop=stop)
        nursery.cancel_scope.cancel()  # the agent stopped; so does the signal watcher


async def _stop_on_signal(stop: trio.Event, scope: trio.CancelScope) -> None:
    """First signal: drain and stop, with a deadline.  A second one: cancel at once."""
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("Received %s; stopping", signal.Signals(signum).name)
            if stop.is_set():
                scope.cancel()
                return
            stop.set()
            scope.deadline = min(scope.deadline, trio.current_time() + SHUTDOWN_GRACE_SECONDS)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


if __name__ == "__main__":
    sys.exit(main())
