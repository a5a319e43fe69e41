"""Helpers for the packaging tests: run Debian's own tools with a clean environment.

The tools (dpkg-buildpackage, lintian, rpmbuild, systemd-analyze) must see Debian's python3,
never the project's virtualenv or a pyenv shim, so every command here runs with a fixed
system PATH and without the variables that point Python elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
PACKAGING = TOP / "packaging"
UNIT_DIR = PACKAGING / "systemd"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Variables that would make a tool or the installed agent read something other than what the
# package installed.
_DROPPED_PREFIXES = ("VIRTUAL_ENV", "PYTHON", "KEYLIME", "LIMELET", "TCTI", "PYENV")
# The gate the issue sets for the agent unit: systemd-analyze calls 0-2.5 "OK".
MAX_AGENT_EXPOSURE = 2.5
# Every build or query finishes in well under a minute on the 2-core machine.
COMMAND_TIMEOUT_SECONDS = 600

AGENT_DEBS = ("python3-limelet", "limelet-agent")
ALL_PACKAGES = (
    "python3-limelet",
    "python3-limelet-service",
    "limelet-agent",
    "limelet-registrar",
    "limelet-verifier",
    "limelet-tenant",
)
UNITS = (
    "limelet-agent.service",
    "limelet-registrar.service",
    "limelet-verifier.service",
    "var-lib-keylime-secure.mount",
)


def system_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env.update({"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"})
    env.update(extra or {})
    return env


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run ``args``; on failure (with ``check``) the assertion shows the whole output."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=system_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-8000:]}\nstderr:\n{result.stderr[-8000:]}"
        )
    return result


def require_tools(*names: str) -> None:
    """Skip (visibly, with -ra) where scripts/setup has not installed a tool yet."""
    missing = [n for n in names if shutil.which(n, path=SYSTEM_PATH) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages listed in packaging/README.md)")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("installs packages into the system: needs root")


def installed_packages(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that dpkg knows in any state other than not-installed."""
    result = run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *names], check=False)
    found = []
    for line in result.stdout.splitlines():
        package, _, status = line.partition(" ")
        if status.strip() and not status.startswith("un"):
            found.append(package)
    return found


def package_file(directory: Path, name: str, suffix: str) -> Path:
    """The one built file of package ``name`` (``limelet-agent_0.1.0_all.deb`` ...)."""
    separator = "_" if suffix == ".deb" else "-"
    matches = [
        p
        for p in directory.iterdir()
        if p.name.startswith(name + separator)
        and p.name.endswith(suffix)
        # "limelet-agent-0.1.0..." must not match "limelet-agent-rust-..." or vice versa.
        and p.name[len(name) + 1 : len(name) + 2].isdigit()
    ]
    assert len(matches) == 1, f"{name}{suffix} in {sorted(p.name for p in directory.iterdir())}"
    return matches[0]
