"""Software TPMs for development, tests, the demo and the benchmarks.

Two steps, because manufacturing is slow (swtpm_setup generates RSA keys, ~1.3 s) and starting
is fast:

* :func:`manufacture` runs ``swtpm_setup`` once with config files of our own, so each run gets
  its own local CA (never ``/var/lib/swtpm-localca``).  The result is a :class:`SwtpmState`:
  a TPM state dir with an RSA-2048 EK certificate at NV 0x01c00002, an ECC P-384 EK certificate
  at 0x01c00016 (swtpm_setup uses the high range for ECC, so there is no P-256 cert at
  0x01c0000a), a platform certificate, and the CA that signed them in ``ca_dir``.
* :class:`Swtpm` copies such a state (so every instance starts fresh) and runs
  ``swtpm socket`` on two free loopback ports.  It is a context manager, or call
  :meth:`Swtpm.start` / :meth:`Swtpm.stop`.

Run ``python -m tools.swtpm`` to manufacture one and keep it running until Ctrl-C.

Errors::

    SwtpmError            swtpm_setup failed, or swtpm did not start (message has its log tail)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Optional

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
SWTPM_LOCALCA = "/usr/bin/swtpm_localca"
LOOPBACK = "127.0.0.1"
# Keylime quotes sha256 by default; sha1 stays active for old policies and for the IMA tests.
ACTIVE_PCR_BANKS = "sha1,sha256"
# swtpm_setup generates two EKs, a platform cert and a CA: seconds on a slow CI runner.
MANUFACTURE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.01
# Picking two adjacent free ports races with other processes; retry a few times.
START_ATTEMPTS = 5
LOG_TAIL_CHARS = 2000

# Names swtpm_localca gives the files in its statedir (swtpm's samples/swtpm_localca.c).
ISSUER_CERT = "issuercert.pem"
ROOT_CERT = "swtpm-localca-rootca-cert.pem"


class SwtpmError(RuntimeError):
    """swtpm_setup or swtpm failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class SwtpmState:
    """A manufactured TPM state dir and the local CA that certified its EKs."""

    state_dir: Path
    ca_dir: Path

    @property
    def issuer_cert(self) -> Path:
        """PEM of the CA that signed the EK certificates (the intermediate)."""
        return self.ca_dir / ISSUER_CERT

    @property
    def root_cert(self) -> Path:
        """PEM of the self-signed root above :attr:`issuer_cert`."""
        return self.ca_dir / ROOT_CERT

    def copy_to(self, state_dir: Path) -> SwtpmState:
        """Copy the TPM state (not the CA, which stays shared) into ``state_dir``."""
        shutil.copytree(self.state_dir, state_dir)
        return SwtpmState(state_dir=state_dir, ca_dir=self.ca_dir)


def _write_configs(workdir: Path, ca_dir: Path) -> Path:
    """Write swtpm_setup.conf, localca.conf and localca.options; return swtpm_setup.conf."""
    conf_dir = workdir / "config"
    conf_dir.mkdir()
    localca_conf = conf_dir / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {ca_dir}\n"
        f"signingkey = {ca_dir / 'signkey.pem'}\n"
        f"issuercert = {ca_dir / ISSUER_CERT}\n"
        f"certserial = {ca_dir / 'certserial'}\n"
    )
    localca_options = conf_dir / "swtpm-localca.options"
    localca_options.write_text(
        "--platform-manufacturer limelet\n--platform-version 2.1\n--platform-model swtpm\n"
    )
    setup_conf = conf_dir / "swtpm_setup.conf"
    setup_conf.write_text(
        f"create_certs_tool = {SWTPM_LOCALCA}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {localca_options}\n"
        f"active_pcr_banks = {ACTIVE_PCR_BANKS}\n"
    )
    return setup_conf


def manufacture(workdir: Path) -> SwtpmState:
    """Create ``workdir/state`` (TPM) and ``workdir/ca`` (its local CA) with swtpm_setup."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = SwtpmState(state_dir=workdir / "state", ca_dir=workdir / "ca")
    state.state_dir.mkdir()
    state.ca_dir.mkdir()
    setup_conf = _write_configs(workdir, state.ca_dir)
    command = [
        SWTPM_SETUP,
        "--tpm2",
        "--tpmstate",
        str(state.state_dir),
        "--create-ek-cert",
        "--create-platform-cert",
        "--pcr-banks",
        ACTIVE_PCR_BANKS,
        "--config",
        str(setup_conf),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=MANUFACTURE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SwtpmError(f"could not run {SWTPM_SETUP}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-LOG_TAIL_CHARS:]
        raise SwtpmError(f"{SWTPM_SETUP} exited with {done.returncode}:\n{tail}")
    return state


def _free_port_pair() -> int:
    """Return a loopback port P such that P and P+1 were both free a moment ago."""
    while True:
        with socket.socket() as first:
            first.bind((LOOPBACK, 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=POLL_INTERVAL_S * 10):
            return True
    except OSError:
        return False


class Swtpm:
    """One running ``swtpm socket`` on a copy of a manufactured state.

    ``Swtpm(template, workdir)`` copies ``template`` into ``workdir/state``; pass
    ``copy=False`` to run on ``template.state_dir`` itself (its changes then persist).
    """

    def __init__(self, template: SwtpmState, workdir: Path, *, copy: bool = True) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._state = template.copy_to(workdir / "state") if copy else template
        self._log_path = workdir / "swtpm.log"
        self._process: Optional[subprocess.Popen[bytes]] = None
        self.port = 0

    @property
    def state_dir(self) -> Path:
        return self._state.state_dir

    @property
    def ca_dir(self) -> Path:
        """The local CA: ``issuercert.pem`` and ``swtpm-localca-rootca-cert.pem``."""
        return self._state.ca_dir

    @property
    def state(self) -> SwtpmState:
        return self._state

    @property
    def ctrl_port(self) -> int:
        return self.port + 1

    @property
    def tcti(self) -> str:
        """The TCTI string for tpm2-pytss and tpm2-tools (``--tcti``)."""
        return f"swtpm:host={LOOPBACK},port={self.port}"

    def start(self) -> Swtpm:
        """Start swtpm and return once its command port accepts connections."""
        if self._process is not None:
            raise SwtpmError("swtpm is already running")
        for _ in range(START_ATTEMPTS):
            self.port = _free_port_pair()
            if self._try_start():
                return self
        raise SwtpmError(f"swtpm did not start after {START_ATTEMPTS} attempts:\n{self._log()}")

    def _try_start(self) -> bool:
        command = [
            SWTPM,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={self.state_dir}",
            "--server",
            f"type=tcp,port={self.port},bindaddr={LOOPBACK}",
            "--ctrl",
            f"type=tcp,port={self.ctrl_port},bindaddr={LOOPBACK}",
            "--flags",
            "not-need-init,startup-clear",
            "--log",
            f"file={self._log_path}",
        ]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise SwtpmError(f"could not run {SWTPM}: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # most likely lost the race for the port: try another pair
            if _accepts(self.ctrl_port) and _accepts(self.port):
                self._process = process
                return True
            time.sleep(POLL_INTERVAL_S)
        _terminate(process)
        raise SwtpmError(f"swtpm did not accept within {START_TIMEOUT_S} s:\n{self._log()}")

    def start_again(self) -> Swtpm:
        """Start a stopped swtpm on its old ports (its TCTI string stays valid): a TPM
        power cycle as seen by a client that stays connected to ``tcti``."""
        if self._process is not None or not self.port:
            raise SwtpmError("swtpm is running, or was never started")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._try_start():  # the old ports may linger a moment after the stop
            if time.monotonic() > deadline:
                raise SwtpmError(f"swtpm did not start again on {self.port}:\n{self._log()}")
            time.sleep(POLL_INTERVAL_S)
        return self

    def stop(self) -> None:
        """Stop swtpm (SIGTERM, then SIGKILL); safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process)

    def _log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    """Manufacture a swtpm in a temp dir, run it, print its TCTI and CA dir until Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="limelet-swtpm-") as tmp:
        template = manufacture(Path(tmp) / "template")
        with Swtpm(template, Path(tmp) / "run", copy=False) as tpm:
            print(f"TCTI={tpm.tcti}")
            print(f"EK CA dir: {tpm.ca_dir}")
            sys.stdout.flush()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
