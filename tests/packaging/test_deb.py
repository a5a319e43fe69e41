"""The Debian packages: they build, lintian finds no error, the units verify against the
installed files, and the agent installs, runs as packaged and purges without a trace.

The install test changes the real system (it is meant for a throwaway machine such as CI's),
so it refuses to run over limelet packages someone installed, and purges in ``finally``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
from pathlib import Path

import pytest

from tests.packaging.debimports import (
    DEBIAN_NAMES,
    OPTIONAL,
    OWN,
    imported_modules,
    relation_names,
)
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


@pytest.mark.parametrize("name", ALL_PACKAGES)
def test_depends_cover_every_import(deb_dir: Path, tmp_path: Path, name: str) -> None:
    # Each package must run on a host that has it alone (plus its Depends): the verifier and
    # tenant once died at "No module named 'httpx'" because only the agent pulled it in.
    deb = package_file(deb_dir, name, ".deb")
    fields = run(["dpkg-deb", "-f", deb]).stdout
    depends = relation_names(_field(fields, "Depends"))
    suggests = relation_names(_field(fields, "Suggests"))
    # What python3-limelet (the one limelet package others Depend on) brings counts too.
    for own in depends & set(OWN.values()):
        own_fields = run(["dpkg-deb", "-f", package_file(deb_dir, own, ".deb")]).stdout
        depends |= relation_names(_field(own_fields, "Depends"))
    missing = []
    for module in sorted(imported_modules(deb, tmp_path)):
        if module in OWN:
            if OWN[module] != name and OWN[module] not in depends:
                missing.append(f"{module} ({OWN[module]})")
        elif module in OPTIONAL:
            if OPTIONAL[module] not in suggests | depends:
                missing.append(f"{module} ({OPTIONAL[module]}, Suggests at least)")
        elif module not in DEBIAN_NAMES:
            missing.append(f"{module} (no Debian name known to tests/packaging/debimports.py)")
        elif not depends & set(DEBIAN_NAMES[module]):
            missing.append(f"{module} ({' or '.join(DEBIAN_NAMES[module])})")
    assert missing == [], f"{name} imports without a Depends: {missing}"


def test_agent_hard_depends_on_tpm2_pytss(deb_dir: Path) -> None:
    # A Recommends let --no-install-recommends install an agent that cannot open the TPM.
    fields = run(["dpkg-deb", "-f", package_file(deb_dir, "limelet-agent", ".deb")]).stdout
    assert "python3-tpm2-pytss (>= 2.1)" in _field(fields, "Depends")
    assert "python3-tpm2-pytss" not in _field(fields, "Recommends")


def test_units_are_under_usr_lib(deb_dir: Path) -> None:
    # Debian 13 is merged-/usr: nothing may be shipped under the /lib alias.
    shipped = {}
    for name in ALL_PACKAGES:
        listing = run(["dpkg-deb", "--contents", package_file(deb_dir, name, ".deb")]).stdout
        shipped[name] = [line.split()[-1] for line in listing.splitlines()]
    aliased = [p for paths in shipped.values() for p in paths if p.startswith("./lib/")]
    assert aliased == []
    units = {p.rsplit("/", 1)[1] for paths in shipped.values() for p in paths}
    for unit in UNITS:
        assert unit in units
        owner = [n for n, paths in shipped.items() if f"./usr/lib/systemd/system/{unit}" in paths]
        assert len(owner) == 1, unit


def _field(control: str, name: str) -> str:
    """One field's value from dpkg-deb -f output (continuation lines joined)."""
    match = re.search(rf"^{name}: (.*(?:\n .*)*)", control, re.MULTILINE)
    return match.group(1) if match else ""


def test_units_verify_against_the_packaged_files(deb_dir: Path, tmp_path: Path) -> None:
    # systemd-analyze verify checks that ExecStart= exists; with --root it looks in a tree
    # that holds the host's own units (targets the units name) plus the unpacked packages.
    require_tools("systemd-analyze")
    root = tmp_path / "root"
    unit_dir = root / "usr/lib/systemd/system"
    shutil.copytree("/usr/lib/systemd/system", unit_dir, symlinks=True)
    for name in ALL_PACKAGES:
        run(["dpkg-deb", "-x", package_file(deb_dir, name, ".deb"), root])
    for unit in UNITS:
        result = run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit_dir / unit])
        assert result.stderr == "", f"{unit}: {result.stderr}"


def test_agent_installs_runs_and_purges(deb_dir: Path) -> None:
    require_root()
    require_tools("apt-get", "dpkg", "runuser")
    _require_installable_tpm2_pytss()
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


def _require_installable_tpm2_pytss() -> None:
    # The agent Depends on python3-tpm2-pytss >= 2.1 (Debian 13, Ubuntu 24.04); Debian 12 has
    # 1.2, so there apt cannot install the agent at all and this host test has nothing to run.
    policy = run(["apt-cache", "policy", "python3-tpm2-pytss"]).stdout
    match = re.search(r"Candidate: (\S+)", policy)
    candidate = match.group(1) if match else "(none)"
    newer = run(["dpkg", "--compare-versions", candidate, "ge", "2.1"], check=False)
    if candidate == "(none)" or newer.returncode != 0:
        pytest.skip(
            f"this host's apt offers python3-tpm2-pytss {candidate}, the agent needs >= 2.1 "
            "(Debian 13 / Ubuntu 24.04; see packaging/README.md)"
        )


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


# Run a package's postrm as dpkg would, in a private mount namespace whose /var/lib is an
# empty tmpfs: the script's real paths are used, and the host's /var/lib is never touched.
_POSTRM_SANDBOX = """
set -e
mount -t tmpfs tmpfs /var/lib
mkdir -p /var/lib/limelet/registrar /var/lib/limelet/verifier
for d in registrar verifier; do echo data > /var/lib/limelet/$d/$d.sqlite; done
sh "$1" remove
echo after-remove; ls /var/lib/limelet/"$2"
sh "$1" purge
echo after-purge; ls /var/lib/limelet
"""


@pytest.mark.parametrize(("name", "other"), [("registrar", "verifier"), ("verifier", "registrar")])
def test_purge_removes_the_database_remove_keeps_it(
    deb_dir: Path, tmp_path: Path, name: str, other: str
) -> None:
    require_root()
    require_tools("unshare", "mount")
    run(["dpkg-deb", "-e", package_file(deb_dir, f"limelet-{name}", ".deb"), tmp_path])
    script = tmp_path / "postrm"
    result = run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            _POSTRM_SANDBOX,
            "sandbox",
            script,
            name,
        ]
    )
    kept, purged = result.stdout.split("after-purge\n")
    assert kept.split("after-remove\n")[1].split() == [f"{name}.sqlite"]
    # Purge takes only this package's directory: the other service's database stays.
    assert purged.split() == [other]
