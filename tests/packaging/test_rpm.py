"""The RPMs build with rpmbuild (on Debian too) and carry the modes and owners the design
sets: the agent's configuration is root:keylime 0440 and %config(noreplace), its state
directory belongs to the agent alone, and every service has its unit and sysusers file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.support import ALL_PACKAGES, PACKAGING, package_file, require_tools, run

pytestmark = pytest.mark.packaging

_QUERY = "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]"
UNIT_DIR = "/usr/lib/systemd/system"
# Path -> (permissions, user, group) for every file whose ownership is part of the design.
EXPECTED = {
    "limelet-agent": {
        "/etc/keylime": ("drwxr-x---", "root", "keylime"),
        "/etc/keylime/agent.conf.d": ("drwxr-x---", "root", "keylime"),
        "/etc/keylime/agent.conf": ("-r--r-----", "root", "keylime"),
        "/var/lib/keylime": ("drwx------", "keylime", "keylime"),
        f"{UNIT_DIR}/limelet-agent.service": ("-rw-r--r--", "root", "root"),
        f"{UNIT_DIR}/var-lib-keylime-secure.mount": ("-rw-r--r--", "root", "root"),
        "/usr/lib/sysusers.d/limelet-agent.conf": ("-rw-r--r--", "root", "root"),
        "/usr/lib/tmpfiles.d/limelet-agent.conf": ("-rw-r--r--", "root", "root"),
        "/usr/bin/limelet-agent": ("-rwxr-xr-x", "root", "root"),
    },
    "limelet-registrar": {
        "/var/lib/limelet/registrar": ("drwx------", "limelet-registrar", "limelet-registrar"),
        f"{UNIT_DIR}/limelet-registrar.service": ("-rw-r--r--", "root", "root"),
        "/usr/lib/sysusers.d/limelet-registrar.conf": ("-rw-r--r--", "root", "root"),
    },
    "limelet-verifier": {
        "/var/lib/limelet/verifier": ("drwx------", "limelet-verifier", "limelet-verifier"),
        f"{UNIT_DIR}/limelet-verifier.service": ("-rw-r--r--", "root", "root"),
        "/usr/lib/sysusers.d/limelet-verifier.conf": ("-rw-r--r--", "root", "root"),
    },
    "limelet-tenant": {"/usr/bin/limelet-tenant": ("-rwxr-xr-x", "root", "root")},
}


def files(rpm: Path) -> dict[str, tuple[str, str, str, str]]:
    """Path -> (permissions, user, group, flags) as rpm records them (full names, unlike -lv)."""
    table = {}
    for line in run(["rpm", "-qp", "--qf", _QUERY, rpm]).stdout.splitlines():
        perms, user, group, flags, path = line.split(" ", 4)
        table[path] = (perms, user, group, flags)
    return table


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_modes_and_owners(rpm_dir: Path, name: str) -> None:
    table = files(package_file(rpm_dir, name, ".rpm"))
    for path, expected in EXPECTED[name].items():
        assert path in table, path
        assert table[path][:3] == expected, path


def test_agent_config_is_noreplace_and_listed_by_qlpv(rpm_dir: Path) -> None:
    rpm = package_file(rpm_dir, "limelet-agent", ".rpm")
    # "c" = %config, "n" = noreplace: an edited agent.conf survives every upgrade.
    assert files(rpm)["/etc/keylime/agent.conf"][3] == "cn"
    listing = run(["rpm", "-qlpv", rpm]).stdout.splitlines()
    config = [line for line in listing if line.endswith(" /etc/keylime/agent.conf")]
    assert len(config) == 1 and config[0].split()[:4] == ["-r--r-----", "1", "root", "keylime"]


def test_nothing_is_world_writable_or_leaks_config(rpm_dir: Path) -> None:
    for name in ALL_PACKAGES:
        for path, (perms, _user, _group, _flags) in files(
            package_file(rpm_dir, name, ".rpm")
        ).items():
            assert perms[8] != "w", path
            if path.startswith("/etc/keylime"):
                assert perms[7:] == "---", path


def test_agent_is_the_one_keylime_agent(rpm_dir: Path) -> None:
    rpm = package_file(rpm_dir, "limelet-agent", ".rpm")
    provides = run(["rpm", "-qp", "--provides", rpm]).stdout.split("\n")
    assert any(line.startswith("keylime-agent = ") for line in provides)
    conflicts = set(run(["rpm", "-qp", "--conflicts", rpm]).stdout.split("\n"))
    assert {"keylime-agent", "keylime-agent-rust", "keylime-agent-rust-common"} <= conflicts


# What each package imports, under Fedora's names (python3-X for PyPI's X, as on Debian).
REQUIRES = {
    "limelet-agent": {"python3-trio", "python3-h11", "python3-tpm2-pytss"},
    "limelet-registrar": {"python3-trio", "python3-quart-trio", "python3-hypercorn"},
    "limelet-verifier": {
        "python3-trio",
        "python3-quart-trio",
        "python3-hypercorn",
        "python3-httpx",
    },
    "limelet-tenant": {"python3-httpx"},
}


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_requires_name_every_import(rpm_dir: Path, name: str) -> None:
    lines = run(["rpm", "-qp", "--requires", package_file(rpm_dir, name, ".rpm")]).stdout
    required = {line.split()[0] for line in lines.splitlines() if line.strip()}
    assert REQUIRES[name] <= required, REQUIRES[name] - required
    assert "python3-limelet" in required


def test_rpmlint_reports_no_errors(rpm_dir: Path) -> None:
    require_tools("rpmlint")
    rpms = sorted(rpm_dir.glob("*.rpm"))
    rc = PACKAGING / "rpm" / "limelet.rpmlintrc"
    result = run(["rpmlint", "-r", rc, *rpms], check=False)
    errors = [line for line in result.stdout.splitlines() if ": E: " in line]
    assert errors == []
    assert f"{len(rpms)} packages and 0 specfiles checked; 0 errors" in result.stdout
