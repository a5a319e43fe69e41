"""scripts/setup on a fresh virtualenv says what it does and how far it got, and nothing else.

setuptools' editable-install warnings (a screenful of "!!" boxes) and pip's own notices used
to reach the newcomer on every fresh run; set-up now keeps each tool's output in a log that it
shows only when that step fails. The run builds a real virtualenv (``LIMELET_VENV``) in a
temporary directory, never touching the project's .venv.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.packaging.support import SYSTEM_PATH, TOP, require_tools

pytestmark = pytest.mark.packaging

# pip install -e plus the FAPI-less tpm2-pytss rebuild; generous for a loaded 2-core machine.
SETUP_TIMEOUT_SECONDS = 1200
# One line per step: packages, venv, install, rebuild, three cached venvs, done.
MAX_LINES = 12
OWN_PREFIXES = ("setup: ", "python -m tools.")


def test_fresh_setup_prints_only_its_steps(tmp_path: Path) -> None:
    require_tools("dpkg-query")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({"PATH": SYSTEM_PATH, "LIMELET_VENV": str(venv), "TMPDIR": str(tmp_path)})
    result = subprocess.run(
        ["bash", "scripts/setup"], cwd=TOP, env=env, capture_output=True, text=True,
        timeout=SETUP_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(output[-200:])
    foreign = [line for line in output if not line.startswith(OWN_PREFIXES)]
    assert foreign == []
    assert len(output) <= MAX_LINES, output
    assert output[-1].startswith("setup: done in ")
    assert any(line.startswith("setup: creating the virtualenv ") for line in output)
    # The set-up really happened: limelet is installed in the new venv, importable from it.
    probe = [str(venv / "bin" / "python"), "-c", "import edge_agent, verifier_lite"]
    assert subprocess.run(probe, cwd=tmp_path, check=False).returncode == 0
    # No log of a successful step is left behind.
    assert not list(tmp_path.glob("limelet-setup.*"))
