"""The README's demo runs to its end and tells each step (it is what newcomers see first)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 300

pytestmark = [pytest.mark.swtpm, pytest.mark.interop]


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """Outside pytest's 0700 temp root: the demo's agent drops to nobody and must reach it."""
    path = Path(tempfile.mkdtemp(prefix="limelet-demo-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_demo_tells_the_whole_story(demo_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--state", str(demo_dir / "state")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    for step in [f"[{n}]" for n in range(1, 16)] + ["[done]"]:
        assert step in out, f"demo output lacks step {step}"
    assert "the TPM unwrapped it: the same secret" in out
    assert "Keylime accepted it" in out
    assert out.count("rejected (") == 3
    # Registration through the real console scripts: the registrar's record matches the TPM.
    assert "EK is this TPM's: True" in out
    assert "AK is the one quoting above: True" in out
    assert "checked against the TPM maker's CA: True" in out
    # Continuous attestation by limelet-verifier, driven by limelet-tenant.
    counts = re.search(r"successful attestations: (\d+) -> (\d+)", out)
    assert counts is not None, out[-3000:]
    assert int(counts.group(2)) > int(counts.group(1))
    assert "the database password is hunter2" in out
    peak = re.search(r"the agent's peak memory so far: ([0-9.]+) MB resident", out)
    assert peak is not None, out[-3000:]
    assert 10.0 < float(peak.group(1)) < 200.0  # a live python process, read from /proc
    assert "the verifier's verdict: " in out
    # The status page: its address, and a screenshot after the tamper step (or why not).
    assert "status page (read-only, loopback only): http://127.0.0.1:" in out
    assert "a screenshot of it after the tamper step: " in out or "no screenshot of it: " in out
    # Push mode: quotes pushed and passed, then the tamper on the device's TPM seen as FAIL.
    pushed = re.search(r"the agent pushed (\d+) quotes; status PASS", out)
    assert pushed is not None, out[-3000:]
    assert "push agent status FAIL (pcr_validation.invalid_pcr_23)" in out, out[-3000:]
