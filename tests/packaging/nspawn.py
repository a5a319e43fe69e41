"""A Debian 13 (trixie) minbase booted with systemd as PID 1 under systemd-nspawn.

The tree comes from ``debootstrap --variant=minbase``, tarred once into
``${LIMELET_CACHE:-~/.cache/limelet}/trixie-minbase.tar`` (a cold debootstrap takes minutes,
unpacking seconds). It carries only what a device has before our packages: systemd, and swtpm
standing in for the TPM. The mirror is the one this machine's apt uses.

The container gets its own network namespace (``--private-network``): the services inside
listen on the container's loopback only, never on the host's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.packaging.support import SYSTEM_PATH, run
from tools.keylime_venv import cache_root

SUITE = "trixie"
# What a device has besides minbase: systemd to boot; swtpm and its TCTI as its TPM.
INCLUDE = (
    "systemd", "systemd-sysv", "dbus", "swtpm", "swtpm-tools", "libtss2-tcti-swtpm0t64",
    "ca-certificates",
)  # fmt: skip
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# debootstrap fetches ~150 packages; unpacking the tarball takes seconds.
DEBOOTSTRAP_TIMEOUT_SECONDS = 1800
# systemd reaches "running" (or "degraded") in seconds; generous for a loaded machine.
BOOT_TIMEOUT_SECONDS = 300
POLL_SECONDS = 0.5
# Set to leave the booted test out on a machine known not to run nspawn (never silently).
SKIP_ENV = "LIMELET_SKIP_NSPAWN"


def mirror() -> str:
    """The Debian mirror this machine's apt is configured with."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        match = re.search(r"(https?://\S+/debian)/?(\s|$)", text)
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def tarball() -> Path:
    """The cached minbase tarball, made on first use."""
    path = cache_root() / f"{SUITE}-minbase.tar"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="limelet-debootstrap-") as scratch:
        tree = Path(scratch) / "root"
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, tree,
             mirror()],
            timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
        )  # fmt: skip
        partial = path.with_suffix(".tar.partial")
        run(["tar", "--numeric-owner", "-C", tree, "-cf", partial, "."])
        partial.rename(path)
    return path


def unpack(root: Path) -> Path:
    root.mkdir(parents=True)
    run(["tar", "--numeric-owner", "-C", root, "-xf", tarball()])
    return root


class Container:
    """A booted tree; :meth:`sh` runs a command inside it with nsenter."""

    def __init__(self, root: Path, leader: int, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.leader = leader
        self.process = process

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", script], check=check)

    def wait_for(self, script: str, what: str, timeout: float = BOOT_TIMEOUT_SECONDS) -> str:
        """Run ``script`` until it exits 0; its output, or an AssertionError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.sh(script, check=False)
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {result.stdout}{result.stderr}")
            time.sleep(POLL_SECONDS)


@contextmanager
def booted(root: Path, log: Path) -> Iterator[Container]:
    """Boot ``root`` with systemd-nspawn; power it off (or kill it) afterwards."""
    env = {**os.environ, "PATH": SYSTEM_PATH, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
    command: Sequence[str] = ["systemd-nspawn", "-D", str(root), "-b", "--register=no",
                              "--keep-unit", "--private-network"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    try:
        container = Container(root, _leader(process, log), process)
        state = container.wait_for(
            "systemctl is-system-running --wait | grep -qxE 'running|degraded' && echo up",
            "systemd did not finish booting",
        )
        assert state.strip() == "up"
        yield container
    finally:
        _power_off(process)


def _leader(process: subprocess.Popen[bytes], log: Path) -> int:
    """PID of the container's systemd: the child of systemd-nspawn that runs systemd."""
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {process.returncode}:\n{_tail(log)}")
        for child in _children(process.pid):
            if _comm(child) == "systemd":
                return child
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"no systemd under systemd-nspawn:\n{_tail(log)}")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def _power_off(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # systemd-nspawn turns SIGTERM into an orderly poweroff of the container.
        process.terminate()
        try:
            process.wait(timeout=BOOT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def require_nspawn() -> None:
    """Fail (not skip) without the tools, unless the run says to leave the test out."""
    import pytest

    if os.environ.get(SKIP_ENV):
        pytest.skip(f"{SKIP_ENV} is set: the booted Debian 13 test is left out")
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "tar")
               if shutil.which(t, path=SYSTEM_PATH) is None]  # fmt: skip
    assert os.geteuid() == 0, f"the booted Debian 13 test needs root (or set {SKIP_ENV}=1)"
    assert missing == [], f"missing {missing}: scripts/setup installs them (or set {SKIP_ENV}=1)"
