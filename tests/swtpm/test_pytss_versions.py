"""The swtpm TPM-layer tests again, under tpm2-pytss 2.3.0 and trio 0.29 (Debian 13's).

The project's .venv runs them with the newest tpm2-pytss; this runs the same files in a second
virtualenv (tools/pytss_venv.py) with the work tree on PYTHONPATH. tpm2-pytss 2.1-2.3 give
``ESAPI.policy_secret`` no defaults for nonce_tpm, cp_hash_a, policy_ref and expiration, so an
agent that relied on 3.0's died at its first ActivateCredential on Debian 13 (issue 14); the
run must therefore include and pass the ActivateCredential tests.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tools.pytss_venv import PYTSS_VERSION, TRIO_VERSION, ensure, venv_python

pytestmark = pytest.mark.swtpm

TOP = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()
# The whole tests/swtpm directory takes about a minute on the 2-core machine; the bound is
# for a loaded machine, not a speed claim.
RUN_TIMEOUT_SECONDS = 1800
# Tests that must have run and passed in the old-library run (the EK-policy paths).
REQUIRED = (
    "tests/swtpm/test_activate_credential.py::test_our_blob_activates[rsa]",
    "tests/swtpm/test_activate_credential.py::test_our_blob_activates[ecc]",
    "tests/swtpm/test_tpm_ak.py::",
)


def test_swtpm_layer_passes_under_tpm2_pytss_2_3(tmp_path: Path) -> None:
    ensure()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(TOP)
    args = [str(venv_python()), "-m", "pytest", "tests/swtpm", "-p", "no:cacheprovider",
            "-rA", "-q", f"--ignore={HERE}", f"--basetemp={tmp_path / 'run'}"]  # fmt: skip
    result = subprocess.run(
        args, cwd=TOP, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    versions = _versions(env)
    assert versions == [PYTSS_VERSION, TRIO_VERSION]
    passed = {line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("PASSED ")}
    for wanted in REQUIRED:
        assert any(name.startswith(wanted) for name in passed), f"{wanted} did not pass"
    summary = re.search(r"(\d+) passed", output.splitlines()[-1])
    assert summary is not None and int(summary.group(1)) == len(passed)


def _versions(env: dict[str, str]) -> list[str]:
    probe = "import importlib.metadata as m, trio; print(m.version('tpm2-pytss'), trio.__version__)"
    result = subprocess.run(
        [str(venv_python()), "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.split()
