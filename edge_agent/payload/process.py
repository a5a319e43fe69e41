"""Run a tenant- or operator-supplied program with a deadline, logging its output by line.

Used for the payload script and for revocation actions.  The child's stdin is /dev/null,
its stdout and stderr are read concurrently and logged one line at a time (stdout at INFO,
stderr at WARNING) with the program's name, so a chatty script cannot fill a pipe and stall.
Lines are cut at MAX_LOGGED_LINE_BYTES.  At the deadline the program gets SIGTERM, then SIGKILL
after TERMINATE_GRACE_SECONDS, and ProgramTimeout is raised.  Nothing is wrapped in an
exception group: a program that cannot start raises plain OSError.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import trio

__all__ = ["MAX_LOGGED_LINE_BYTES", "ProgramTimeout", "run_logged"]

log = logging.getLogger(__name__)

# A log line longer than this is cut; a script that prints megabytes on one line gets no more.
MAX_LOGGED_LINE_BYTES = 4096
# After the program exits, output still in the pipes is logged for at most this long.
OUTPUT_DRAIN_SECONDS = 1.0
# Between SIGTERM and SIGKILL for a program past its deadline.
TERMINATE_GRACE_SECONDS = 5.0


class ProgramTimeout(Exception):
    """The program ran past its deadline and was terminated."""

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(f"{name} ran longer than {timeout_s} s and was stopped")
        self.name = name
        self.timeout_s = timeout_s


async def run_logged(
    argv: Sequence[str],
    *,
    name: str,
    cwd: Path,
    timeout_s: float,
    env: Optional[Mapping[str, str]] = None,
) -> int:
    """Run ``argv`` in ``cwd``; its exit status (negative: killed by that signal).

    Raises OSError when it cannot be started and ProgramTimeout past ``timeout_s``.
    """
    process = await trio.lowlevel.open_process(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with trio.move_on_after(timeout_s) as scope:
            await _wait_and_log(process, name)
    finally:
        await _reap(process)
    if scope.cancelled_caught:
        raise ProgramTimeout(name, timeout_s)
    return process.returncode if process.returncode is not None else -1


async def _wait_and_log(process: trio.Process, name: str) -> None:
    assert process.stdout is not None  # noqa: S101 -- opened with PIPE
    assert process.stderr is not None  # noqa: S101
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_log_lines, process.stdout, name, logging.INFO)
        nursery.start_soon(_log_lines, process.stderr, name, logging.WARNING)
        await process.wait()
        # A daemon the script started may keep the pipes open for ever: read what is
        # already there, then stop listening.
        nursery.cancel_scope.deadline = trio.current_time() + OUTPUT_DRAIN_SECONDS


async def _reap(process: trio.Process) -> None:
    """Stop the program if it still runs (SIGTERM, then SIGKILL) and close its pipes."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(TERMINATE_GRACE_SECONDS):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


async def _log_lines(stream: trio.abc.ReceiveStream, name: str, level: int) -> None:
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _log_one(name, level, line)
        if len(pending) > MAX_LOGGED_LINE_BYTES:
            _log_one(name, level, pending)
            pending = b""
    if pending:
        _log_one(name, level, pending)


def _log_one(name: str, level: int, line: bytes) -> None:
    text = line[:MAX_LOGGED_LINE_BYTES].decode("utf-8", errors="replace").rstrip("\r")
    log.log(level, "%s: %s", name, text)
