"""The two verifiers under test, started the same way on the same certificates.

Real Keylime 7.14.3's verifier comes from tools/keylime_services.py (its registrar starts too
but is never used: the fleet is enrolled directly, bench/fleet/fleet.py).  limelet-verifier
runs as its own process with a TOML config pointing at a copy of the CA, server and client
certificates Keylime generated, so the fleet's agents trust one CA and the admin client
holds one certificate for both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.keylime_services import free_port, get_json, start_keylime

READY_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class RunningVerifier:
    name: str
    pid: int
    port: int
    tls_dir: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextlib.contextmanager
def keylime_verifier(root: Path, interval: float) -> Iterator[RunningVerifier]:
    overrides = {"verifier": {"quote_interval": str(interval), "max_retries": "5"}}
    with start_keylime(root, quote_interval_seconds=int(interval), overrides=overrides) as kl:
        pid = _pid_listening(kl.verifier_port)
        yield RunningVerifier("keylime", pid, kl.verifier_port, kl.layout.tls_dir)


def _pid_listening(port: int) -> int:
    """The verifier's top process: the lowest pid among those holding its listening socket
    (Keylime's forked workers inherit the socket from it)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    pids = sorted(
        {int(p.split("=")[1]) for p in out.replace(",", " ").split() if p.startswith("pid=")}
    )
    if not pids:
        raise RuntimeError(f"nothing listens on port {port}")
    return pids[0]


def _limelet_config(
    data_dir: Path, tls_dir: Path, port: int, interval: float, extra: tuple[str, ...]
) -> str:
    """``extra``: more ``key = value`` TOML lines (verifier_fleet.py --limelet-option)."""
    return "\n".join(
        [
            'ip = "127.0.0.1"',
            f"port = {port}",
            f'data_dir = "{data_dir}"',
            f'tls_dir = "{tls_dir}"',
            f"quote_interval = {float(interval)}",
            "retry_interval = 1.0",
            "max_retries = 5",
            "request_timeout = 30.0",
            *extra,
            "",
        ]
    )


@contextlib.contextmanager
def limelet_verifier(
    root: Path, tls_from: Path, interval: float, extra: tuple[str, ...] = ()
) -> Iterator[RunningVerifier]:
    tls_dir = root / "cv_ca"
    shutil.copytree(tls_from, tls_dir, dirs_exist_ok=True)
    port = free_port()
    config = root / "verifier.toml"
    config.write_text(_limelet_config(root / "data", tls_dir, port, interval, extra))
    (root / "data").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with (root / "verifier.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "verifier_lite.cli", "-c", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            _wait_ready(port, tls_dir, process)
            yield RunningVerifier("limelet", process.pid, port, tls_dir)
        finally:
            process.terminate()
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def admin_context(tls_dir: Path) -> ssl.SSLContext:
    """The admin (tenant) client context: Keylime's generated client certificate."""
    ctx = ssl.create_default_context(cafile=str(tls_dir / "cacert.crt"))
    ctx.load_cert_chain(str(tls_dir / "client-cert.crt"), str(tls_dir / "client-private.pem"))
    return ctx


def _wait_ready(port: int, tls_dir: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"limelet-verifier exited with {process.returncode}")
        try:
            status, _ = get_json("127.0.0.1", port, "/version", admin_context(tls_dir))
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("limelet-verifier did not answer /version")
