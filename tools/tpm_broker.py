"""A TPM resource manager in front of a swtpm, so several clients can use it at once.

swtpm's TCP data channel serves one connection at a time; an agent holding it would shut out
anyone else (e.g. :mod:`tools.ima_emulator` extending PCR 10 while the agent quotes).  Like a
kernel's /dev/tpmrm0, ``tpm2-abrmd`` (Debian packages ``tpm2-abrmd`` and
``libtss2-tcti-tabrmd0``) holds the one connection and multiplexes its clients, each through the
``tabrmd`` TCTI over D-Bus.  To stay private and need no system bus, :class:`TpmBroker` starts
its own session bus (``dbus-daemon --session``) and one ``tpm2-abrmd --session`` on it::

    with Swtpm(template, workdir) as tpm, TpmBroker(tpm.tcti, workdir / "broker") as broker:
        os.environ.update(broker.env)  # the tabrmd TCTI finds the session bus here
        esys = ESAPI(broker.tcti)

Clients find the bus through ``DBUS_SESSION_BUS_ADDRESS`` (:attr:`TpmBroker.env`), which the
tabrmd TCTI reads from the environment of the process that loads it.

Errors::

    TpmBrokerError        dbus-daemon or tpm2-abrmd did not start (message has its log tail)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Optional

DBUS_DAEMON = "dbus-daemon"
DBUS_SEND = "dbus-send"
TPM2_ABRMD = "tpm2-abrmd"
# A name of our own on our own bus (tpm2-abrmd's default is com.intel.tss2.Tabrmd).
DEFAULT_BUS_NAME = "org.limelet.Tabrmd"
BUS_ENV = "DBUS_SESSION_BUS_ADDRESS"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
COMMAND_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 2000
# abrmd logs a GLib CRITICAL and then hangs, rather than exits, when its TCTI cannot reach
# the TPM ("init_thread_func: failed to create TCTI"); seeing it ends the wait early.
ABRMD_FATAL_MARK = "CRITICAL **"


class TpmBrokerError(RuntimeError):
    """dbus-daemon or tpm2-abrmd failed; the message carries the tail of its output."""


class TpmBroker:
    """A private D-Bus session bus with a ``tpm2-abrmd`` on it, in front of ``tpm_tcti``.

    A context manager, or call :meth:`start` / :meth:`stop`; stopping is always complete
    (abrmd first, then the bus), even after a failed start.
    """

    def __init__(self, tpm_tcti: str, workdir: Path, *, bus_name: str = DEFAULT_BUS_NAME) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.tpm_tcti = tpm_tcti
        self.bus_name = bus_name
        self.bus_address = ""
        self._bus_log = workdir / "dbus-daemon.log"
        self._abrmd_log = workdir / "tpm2-abrmd.log"
        self._bus: Optional[subprocess.Popen[str]] = None
        self._abrmd: Optional[subprocess.Popen[bytes]] = None

    @property
    def tcti(self) -> str:
        """The TCTI string for clients (tpm2-pytss, tpm2-tools, the agent's ``tcti``)."""
        return f"tabrmd:bus_name={self.bus_name},bus_type=session"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables a client process needs for :attr:`tcti` to find the bus."""
        return {BUS_ENV: self.bus_address}

    def start(self) -> TpmBroker:
        """Start the bus, then abrmd; return once abrmd owns its name on the bus."""
        if self._bus is not None:
            raise TpmBrokerError("the broker is already running")
        try:
            self._start_bus()
            self._start_abrmd()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_bus(self) -> None:
        with open(self._bus_log, "wb") as log:
            try:
                self._bus = subprocess.Popen(
                    [DBUS_DAEMON, "--session", "--nofork", "--print-address=1"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            except OSError as exc:
                raise TpmBrokerError(f"could not run {DBUS_DAEMON}: {exc}") from exc
        # dbus-daemon prints its address once it listens (dbus-daemon(1), --print-address).
        stdout: Optional[IO[str]] = self._bus.stdout
        address = stdout.readline().strip() if stdout is not None else ""
        if not address:
            raise TpmBrokerError(f"{DBUS_DAEMON} printed no address:\n{_tail(self._bus_log)}")
        self.bus_address = address

    def _start_abrmd(self) -> None:
        command = [
            TPM2_ABRMD,
            "--session",
            f"--dbus-name={self.bus_name}",
            f"--tcti={self.tpm_tcti}",
            "--logger=stdout",
            # Test containers run as root; abrmd refuses that unless told (tpm2-abrmd(8)).
            "--allow-root",
        ]
        env = dict(os.environ, **self.env)
        with open(self._abrmd_log, "wb") as log:
            try:
                self._abrmd = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
                )
            except OSError as exc:
                raise TpmBrokerError(f"could not run {TPM2_ABRMD}: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._abrmd.poll() is not None:
                raise TpmBrokerError(
                    f"{TPM2_ABRMD} exited with {self._abrmd.returncode}:\n{_tail(self._abrmd_log)}"
                )
            if self._name_has_owner():
                return
            if ABRMD_FATAL_MARK in _tail(self._abrmd_log):
                raise TpmBrokerError(f"{TPM2_ABRMD} failed:\n{_tail(self._abrmd_log)}")
            time.sleep(POLL_INTERVAL_S)
        raise TpmBrokerError(
            f"{TPM2_ABRMD} did not claim {self.bus_name} within {START_TIMEOUT_S} s:\n"
            f"{_tail(self._abrmd_log)}"
        )

    def _name_has_owner(self) -> bool:
        """Ask the bus (org.freedesktop.DBus.NameHasOwner) whether abrmd is on it yet."""
        done = subprocess.run(
            [
                DBUS_SEND,
                f"--bus={self.bus_address}",
                "--dest=org.freedesktop.DBus",
                "--type=method_call",
                "--print-reply",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                f"string:{self.bus_name}",
            ],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        return done.returncode == 0 and "boolean true" in done.stdout

    def stop(self) -> None:
        """Stop abrmd, then the bus (SIGTERM, then SIGKILL); safe to call twice."""
        abrmd, self._abrmd = self._abrmd, None
        bus, self._bus = self._bus, None
        try:
            if abrmd is not None:
                _terminate(abrmd)
        finally:
            if bus is not None:
                _terminate(bus)
                if bus.stdout is not None:
                    bus.stdout.close()

    def log_tail(self) -> str:
        """The end of abrmd's log, for assertion messages."""
        return _tail(self._abrmd_log)

    def __enter__(self) -> TpmBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


def _terminate(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
