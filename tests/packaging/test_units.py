"""The systemd units, sysusers.d and tmpfiles.d files as shipped, checked without building.

The exposure score is systemd's own (``systemd-analyze security --offline``, systemd 252);
the directive checks pin the hardening packaging/README.md explains, so that dropping one is
a visible test failure rather than a quiet score change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_agent.config.defaults import DEFAULT_KEYLIME_DIR, DEFAULT_RUN_AS, DEFAULT_SECURE_SIZE
from tests.packaging.support import MAX_AGENT_EXPOSURE, PACKAGING, UNIT_DIR, require_tools, run

pytestmark = pytest.mark.packaging

_SCORE_RE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+) (\w+)")
SERVICES = ("limelet-agent.service", "limelet-registrar.service", "limelet-verifier.service")
# Directive -> the exact value the agent unit must carry (packaging/README.md, "Hardening").
AGENT_DIRECTIVES = {
    "User": ["keylime"],
    "Group": ["keylime"],
    "SupplementaryGroups": ["tss"],
    "UMask": ["0077"],
    "StateDirectory": ["keylime"],
    "CapabilityBoundingSet": [""],
    "NoNewPrivileges": ["yes"],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "DevicePolicy": ["closed"],
    "DeviceAllow": ["/dev/tpmrm0 rw"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallArchitectures": ["native"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectHostname": ["yes"],
    "RestrictNamespaces": ["yes"],
    "LockPersonality": ["yes"],
    "MemoryDenyWriteExecute": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "Requires": ["var-lib-keylime-secure.mount"],
}


def directives(path: Path) -> dict[str, list[str]]:
    """Unit file keys to all their values in order (systemd allows repeated keys)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", SERVICES)
def test_exposure_score_is_ok(unit: str) -> None:
    require_tools("systemd-analyze")
    result = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", UNIT_DIR / unit])
    match = _SCORE_RE.search(result.stdout)
    assert match is not None, result.stdout
    assert match.group(1) == unit
    assert float(match.group(2)) <= MAX_AGENT_EXPOSURE
    assert match.group(3) == "OK"


def test_agent_unit_carries_the_documented_hardening() -> None:
    found = directives(UNIT_DIR / "limelet-agent.service")
    for key, values in AGENT_DIRECTIVES.items():
        assert found.get(key) == values, key
    # PrivateDevices=yes would replace /dev and hide /dev/tpmrm0 from the agent.
    assert "PrivateDevices" not in found


def test_agent_user_matches_the_run_as_default() -> None:
    # A device that swaps rust-keylime for limelet keeps the owner of keylime_dir.
    found = directives(UNIT_DIR / "limelet-agent.service")
    assert f"{found['User'][0]}:{found['SupplementaryGroups'][0]}" == DEFAULT_RUN_AS


def test_secure_mount_matches_the_agent_defaults() -> None:
    found = directives(UNIT_DIR / "var-lib-keylime-secure.mount")
    assert found["Where"] == [f"{DEFAULT_KEYLIME_DIR}/secure"]
    assert found["Type"] == ["tmpfs"]
    options = found["Options"][0].split(",")
    for option in ("mode=0700", f"size={DEFAULT_SECURE_SIZE}", "uid=keylime", "gid=keylime"):
        assert option in options
    # The unit name is the escaped mount point, as systemd requires.
    escaped = run(["systemd-escape", "--path", "--suffix=mount", found["Where"][0]])
    assert escaped.stdout.strip() == "var-lib-keylime-secure.mount"


@pytest.mark.parametrize("unit", SERVICES)
def test_each_service_has_its_own_sysusers_user(unit: str) -> None:
    user = directives(UNIT_DIR / unit)["User"][0]
    sysusers = (PACKAGING / "sysusers.d" / unit.replace(".service", ".conf")).read_text()
    assert re.search(rf"^u {re.escape(user)} ", sysusers, re.MULTILINE), sysusers


def test_tmpfiles_never_recurse() -> None:
    # CVE-2022-31250: a recursive chown/chmod (Z, z on globs, R, C) as root over a directory
    # the service can write lets it redirect root through links; only plain "d" lines here.
    files = sorted((PACKAGING / "tmpfiles.d").glob("*.conf"))
    assert files
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.split()[0] == "d", f"{path.name}: {line}"
