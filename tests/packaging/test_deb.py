"""The Debian packages: they build, lintian finds no error, the units verify against the
installed files, and the agent installs, runs as packaged and purges without a trace.

The install test changes the real system (it is meant for a throwaway machine such as CI's),
so it refuses to run over limelet packages someone installed, and purges in ``finally``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from pathlib import Path

import pytest

from tests.packaging.support import (
    AGENT_DEBS,
    ALL_PACKAGES,
    UNITS,
    installed_packages,
    package_file,
    require_root,
    require_tools,
    run,
)

pytestmark = pytest.mark.packaging

CONFIG = Path("/etc/keylime/agent.conf")
STATE_DIR = Path("/var/lib/keylime")
# dpkg-query's Status-Abbrev for a package gone entirely, config included.
_PURGED = ("un", "pn")


def test_lintian_reports_no_errors(deb_dir: Path) -> None:
    require_tools("lintian")
    changes = sorted(deb_dir.glob("*.changes"))
    assert len(changes) == 1
    result = run(["lintian", "--fail-on", "none", changes[0]])
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == []


def test_every_package_is_built(deb_dir: Path) -> None:
    for name in ALL_PACKAGES:
        package_file(deb_dir, name, ".deb")
    fields = run(["dpkg-deb", "-f", package_file(deb_dir, "limelet-agent", ".deb")]).stdout
    # Exactly one Keylime agent per host: the virtual name rust-keylime's .deb also carries.
    for field in ("Provides", "Conflicts", "Replaces"):
        assert f"{field}: keylime-agent\n" in fields


def test_units_verify_against_the_packaged_files(deb_dir: Path, tmp_path: Path) -> None:
    # systemd-analyze verify checks that ExecStart= exists; with --root it looks in a tree
    # that holds the host's own units (targets the units name) plus the unpacked packages.
    require_tools("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    for name in ALL_PACKAGES:
        run(["dpkg-deb", "-x", package_file(deb_dir, name, ".deb"), root])
    unit_dir = root / "lib/systemd/system"
    for unit in UNITS:
        result = run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit_dir / unit])
        assert result.stderr == "", f"{unit}: {result.stderr}"


def test_agent_installs_runs_and_purges(deb_dir: Path) -> None:
    require_root()
    require_tools("apt-get", "dpkg", "runuser")
    already = installed_packages(ALL_PACKAGES)
    if already:
        pytest.skip(f"refusing to touch limelet packages already installed: {already}")
    debs = [f"./{package_file(deb_dir, name, '.deb').name}" for name in AGENT_DEBS]
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *debs], cwd=deb_dir)
        owned = run(["dpkg", "-L", *AGENT_DEBS]).stdout.splitlines()
        _check_installed_agent()
    finally:
        run(["apt-get", "purge", "-y", "-q", *AGENT_DEBS], check=False)
    _check_purged(owned)


def _check_installed_agent() -> None:
    version = run(["/usr/bin/limelet-agent", "--version"])
    assert version.stdout.startswith("limelet-agent (limelet) ")
    # The service user reads the configuration through its group; nobody else can.
    as_agent = run(["runuser", "-u", "keylime", "--", "/usr/bin/limelet-agent", "--check-config"])
    assert as_agent.stdout.splitlines()[0] == f"# read: {CONFIG}"
    keylime = pwd.getpwnam("keylime")
    assert "keylime" in grp.getgrnam("tss").gr_mem
    config = CONFIG.stat()
    assert (stat.S_IMODE(config.st_mode), config.st_uid, config.st_gid) == (
        0o440,
        0,
        keylime.pw_gid,
    )
    state = STATE_DIR.stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid) == (0o700, keylime.pw_uid)


def _check_purged(owned: list[str]) -> None:
    status = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}\n", *AGENT_DEBS], check=False)
    assert all(line[:2] in _PURGED for line in status.stdout.splitlines())
    left = [p for p in owned if os.path.lexists(p) and not os.path.isdir(p)]
    assert left == []
    assert not CONFIG.parent.exists()
    assert not STATE_DIR.exists()
    overrides = run(["dpkg-statoverride", "--list"]).stdout
    assert "keylime" not in overrides
