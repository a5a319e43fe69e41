"""Running the real rust-keylime 0.2.9 agent (../shared/peers/rust-keylime-0.2.9) on swtpm.

The peer is a prebuilt binary shared beside the repository.  Without it these tests skip with
a loud reason, except when the ``CI`` variable is set: there a missing peer is a failure, so
the interop proof cannot silently vanish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = [
    "RUST_AGENT_DIR",
    "SHIPPED_CONF",
    "TEMPLATE_CONF",
    "RustAgent",
    "flush_transient",
    "require_rust_agent",
    "running_rust_agent",
    "rust_conf",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
RUST_AGENT_DIR = REPO_ROOT.parent / "shared" / "peers" / "rust-keylime-0.2.9"
CONFS = Path(__file__).resolve().parent / "confs"
SHIPPED_CONF = CONFS / "rust-keylime-0.2.9.conf"  # see confs/PROVENANCE.md
TEMPLATE_CONF = CONFS / "keylime-7.14.3-template.conf"
START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 15.0
POLL_SECONDS = 0.1
FLUSH_TIMEOUT_SECONDS = 30.0


def require_rust_agent() -> Path:
    """The peer's directory; skip loudly (fail under CI) when it is not there."""
    wrapper = RUST_AGENT_DIR / "keylime_agent"
    if wrapper.is_file():
        return RUST_AGENT_DIR
    reason = f"rust-keylime 0.2.9 peer not found at {RUST_AGENT_DIR}: interop with it NOT tested"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def rust_conf(
    keylime_dir: Path, *, uuid: str, port: int, registrar_port: int, source: Path = SHIPPED_CONF
) -> str:
    """An agent.conf (rust-keylime's shipped one) with only machine-specific values changed."""
    text = source.read_text()
    for old, new in (
        ('keylime_dir = "/var/lib/keylime"', f'keylime_dir = "{keylime_dir}"'),
        ('run_as = "keylime:tss"', 'run_as = ""'),
        ('uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"', f'uuid = "{uuid}"'),
        ("registrar_port = 8890", f"registrar_port = {registrar_port}"),
        ("\nport = 9002", f"\nport = {port}"),
        ("contact_port = 9002", f"contact_port = {port}"),
    ):
        assert old in text, f"shipped conf changed: {old!r} not found"
        text = text.replace(old, new)
    # The actions directory must exist when revocation notifications are on (the template's
    # default); the packaged one is not installed here.
    actions = keylime_dir / "actions"
    actions.mkdir(exist_ok=True)
    return text.replace('"/usr/libexec/keylime"', f'"{actions}"')


def wait_until(condition: object, what: str, deadline: float = START_DEADLINE_SECONDS) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``deadline`` seconds."""
    assert callable(condition)
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


class RustAgent:
    """One running rust-keylime agent process and its log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log_path = log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str) -> None:
        def seen() -> bool:
            if self.process.poll() is not None and text not in self.log():
                pytest.fail(f"rust-keylime exited ({self.process.returncode}):\n{self.log()}")
            return text in self.log()

        wait_until(seen, f"rust-keylime to log {text!r}")

    async def wait_for_log_async(self, text: str) -> None:
        """:meth:`wait_for_log` for trio tests whose registrar runs in the same event loop."""
        end = time.monotonic() + START_DEADLINE_SECONDS
        while text not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"rust-keylime exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > end:
                pytest.fail(f"rust-keylime did not log {text!r}:\n{self.log()}")
            await trio.sleep(POLL_SECONDS)


@contextmanager
def running_rust_agent(conf: Path, tcti: str, workdir: Path) -> Iterator[RustAgent]:
    """Start the rust agent with ``conf`` on ``tcti``; stop it and flush its TPM objects after."""
    env = dict(os.environ, TCTI=tcti, KEYLIME_AGENT_CONFIG=str(conf), RUST_LOG="info")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "rust-agent.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(RUST_AGENT_DIR / "keylime_agent")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield RustAgent(process, log)
    finally:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        flush_transient(tcti)
        _unmount_secure(conf)


def _unmount_secure(conf: Path) -> None:
    # As root the agent mounts a tmpfs at <keylime_dir>/secure and leaves it when stopped.
    keylime_dir = tomllib.loads(conf.read_text())["agent"]["keylime_dir"]
    secure = Path(keylime_dir) / "secure"
    if os.path.ismount(secure):
        subprocess.run(["umount", str(secure)], check=True, timeout=FLUSH_TIMEOUT_SECONDS)


def flush_transient(tcti: str) -> None:
    """Drop the transient objects a stopped agent left in swtpm (its README's advice)."""
    subprocess.run(
        ["tpm2_flushcontext", "-t"],
        env=dict(os.environ, TPM2TOOLS_TCTI=tcti),
        check=True,
        capture_output=True,
        timeout=FLUSH_TIMEOUT_SECONDS,
    )
