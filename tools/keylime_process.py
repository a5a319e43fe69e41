"""One Keylime service process: started in its own process group, logged to a file, stopped.

Keylime's server parent ignores SIGTERM and waits for its forked workers, and its shared-memory
manager process ignores SIGTERM too (keylime/web/base/server.py ``start_multi``,
keylime/shared_data.py). So the service gets a process group of its own
(``start_new_session``), SIGTERM goes to the group, and after a grace period SIGKILL goes to
whatever is left of that group. ``stop_all`` signals all services first so their shutdowns
(about a second each) overlap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KeylimeStartupError", "ServiceProcess", "log_tail", "stop_all"]

LOG_TAIL_LINES = 60


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class KeylimeStartupError(RuntimeError):
    """The service exited or did not become ready; carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_path: Path) -> None:
        super().__init__(
            f"{service} {reason}\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
        )
        self.service = service
        self.log_path = log_path


@dataclass
class ServiceProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(
        cls, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ServiceProcess:
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, popen, log_path)

    def wait_ready(self, probe: Callable[[], bool], timeout: float, interval: float) -> float:
        """Call ``probe`` until it returns True; return the seconds it took.

        Raises :class:`KeylimeStartupError` if the process exits first or time runs out.
        """
        started = time.monotonic()
        deadline = started + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                raise KeylimeStartupError(
                    self.name, f"exited with {code} during start-up", self.log_path
                )
            if probe():
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise KeylimeStartupError(
                    self.name, f"did not answer within {timeout:.0f} s", self.log_path
                )
            time.sleep(interval)

    def terminate(self) -> None:
        """Ask the whole process group to shut down (SIGTERM)."""
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)

    def reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the leader, then SIGKILL what is left of the group."""
        group = self.popen.pid  # start_new_session: the leader's pid is the group id
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            self.popen.wait()
        # Forked workers or the manager process may outlive the leader; they are still in the
        # group, whose id cannot be reused while any of them lives.
        _signal_group(group, signal.SIGKILL)


def stop_all(processes: Sequence[ServiceProcess], grace: float) -> None:
    """SIGTERM every group at once (shutdowns overlap), then reap each within ``grace``."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.reap(max(0.0, deadline - time.monotonic()))


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)
