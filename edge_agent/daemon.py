"""The running daemon behind ``limelet-agent``: trio, the app, signals and fatal errors.

Kept apart from ``cli`` so that the command line can start opening the TPM
(edge_agent.tpm.early) before trio, the app and the server are imported: those imports are
most of the agent's start-up time, and the TPM's work overlaps them.

The first SIGTERM or SIGINT drains (``SHUTDOWN_GRACE_SECONDS``), a second one cancels at
once.  A configuration, TPM, key or registrar error is printed as one line, exit status 1.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Optional

import trio

from edge_agent.app import SHUTDOWN_GRACE_SECONDS, open_pytss_tpm, run_agent
from edge_agent.config import AgentConfig, ConfigError
from edge_agent.exits import EXIT_FAILURE, EXIT_OK
from edge_agent.ima import ImaReaderError
from edge_agent.keys import AgentKeyError
from edge_agent.privileges import PrivilegeError, drop_privileges
from edge_agent.push.errors import PushError
from edge_agent.registrar_client import RegistrarError
from edge_agent.tpm import TpmError
from edge_agent.tpm.early import EarlyTpm

if sys.version_info < (3, 11):  # pragma: no cover - Python < 3.11 only
    from exceptiongroup import BaseExceptionGroup

__all__ = ["run"]

log = logging.getLogger("edge_agent")

# What stops the agent with a message rather than a traceback (and PayloadError, see
# _is_fatal: a push agent never imports the payload package).
_FATAL = (
    ConfigError,
    TpmError,
    AgentKeyError,
    RegistrarError,
    ImaReaderError,
    PrivilegeError,
    PushError,
)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run(config: AgentConfig, early: Optional[EarlyTpm]) -> int:
    """Run the agent until a stop signal; the exit status."""
    try:
        trio.run(_serve, config, early)
    except BaseExceptionGroup as group:
        fatal = list(_leaves(group))
        if not all(_is_fatal(leaf) for leaf in fatal):
            raise
        for leaf in fatal:
            print(f"limelet-agent: {leaf}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if not _is_fatal(exc):
            raise
        print(f"limelet-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _is_fatal(exc: BaseException) -> bool:
    if isinstance(exc, _FATAL):
        return True
    payload = sys.modules.get("edge_agent.payload.errors")  # loaded by a pull agent only
    return payload is not None and isinstance(exc, payload.PayloadError)


async def _serve(config: AgentConfig, early: Optional[EarlyTpm]) -> None:
    stop = trio.Event()
    open_tpm = open_pytss_tpm if early is None else early.open
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, stop, nursery.cancel_scope)
        drop = functools.partial(_drop_privileges, config)
        await run_agent(config, open_tpm=open_tpm, stop=stop, before_serving=drop)
        nursery.cancel_scope.cancel()  # the agent stopped; so does the signal watcher


async def _drop_privileges(config: AgentConfig) -> None:
    """As root with ``run_as``: mount the secure dir, hand it to the user, then drop for good.

    The order is rust-keylime's (keylime-agent/src/main.rs): the TPM, the IMA and boot logs
    are already open, the server's TLS key is loaded and the tmpfs is mounted while still
    root; keylime_dir and the secure dir (not what is in them) then belong to the user, as
    the packaged unit's StateDirectory would.  Started as another user (the
    packaged unit runs as ``keylime``), ``run_as`` does not apply.
    """
    if not config.run_as:
        return
    if os.geteuid() != 0:
        log.info("Not started as root: run_as %r does not apply", config.run_as)
        return
    if config.push_model:
        # No payloads in push mode: no secure dir to mount.
        drop_privileges(config.run_as, chown_paths=[config.data_dir])
        log.info("Dropped root privileges: running as %s", config.run_as)
        return
    from edge_agent.payload import prepare_secure_dir  # pull agents only
    from edge_agent.server.hooks import SECURE_DIR_NAME

    prepare = functools.partial(
        prepare_secure_dir, config.data_dir / SECURE_DIR_NAME, config.secure_size, is_root=True
    )
    secure = await trio.to_thread.run_sync(prepare)
    # keylime_dir itself (not its files: CVE-2022-31250) so the agent can still reach the
    # secure dir inside it; the key files stay root's 0600 and are already loaded.
    drop_privileges(config.run_as, chown_paths=[config.data_dir, secure.path])
    log.info("Dropped root privileges: running as %s", config.run_as)


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
