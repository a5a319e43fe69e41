"""The .debs end to end, as a user gets them: Debian 13 minbase, apt, systemd as PID 1.

apt installs the built packages into a fresh trixie tree (tests/packaging/nspawn.py), every
dependency from Debian, once with and once without recommends. The tree is booted with
systemd-nspawn; inside, swtpm plays the TPM and the shipped units run as shipped, configured
only the way an administrator would (drop-ins and files in /etc). The installed tenant enrols
the agent and the verifier's attestation count must rise; the units stop cleanly, the agent's
logs are in the journal, and purge leaves only the administrator's own files.

Fails, with the reason, where nspawn cannot boot; ``LIMELET_SKIP_NSPAWN=1`` leaves it out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.packaging.nspawn import Container, booted, require_nspawn, unpack
from tests.packaging.support import ALL_PACKAGES, TOP, run

pytestmark = pytest.mark.packaging

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"  # the uuid of the shipped agent.conf
SERVICES = ("limelet-registrar", "limelet-verifier", "limelet-agent")
DEB_DIR = "/srv/limelet-debs"  # not /tmp: nspawn mounts a fresh tmpfs there
# Attestations the verifier must count before the test looks at anything else; it quotes
# every 2 s by default.
ATTESTATIONS = 3
ATTESTED_WITHIN_SECONDS = 120
SECURITY_RESULTS = TOP / "bench" / "results" / "systemd-analyze-security-debian13.txt"

_SWTPM = """
mkdir -p /var/lib/swtpm
swtpm_setup --tpm2 --tpmstate /var/lib/swtpm --create-ek-cert --create-platform-cert \
  --lock-nvram --overwrite
systemd-run --unit=swtpm swtpm socket --tpm2 --tpmstate dir=/var/lib/swtpm \
  --server type=tcp,port=2321,bindaddr=127.0.0.1 --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear
"""
# The verifier makes its CA at first start; the admin hands the registrar its server
# certificate and the agent the CA that signs the verifier's client certificate.
CA_DIR = "/var/lib/limelet/verifier/cv_ca"
_CONFIGURE = r"""
set -e
ca=/var/lib/limelet/verifier/cv_ca
install -d -m 0750 -g limelet-registrar /etc/limelet/registrar-tls
install -m 0640 -g limelet-registrar $ca/cacert.crt $ca/server-cert.crt $ca/server-private.pem \
  /etc/limelet/registrar-tls/
mkdir -p /etc/systemd/system/limelet-registrar.service.d
printf '[Service]\nEnvironment=LIMELET_REGISTRAR_TLS_DIR=/etc/limelet/registrar-tls\n' \
  > /etc/systemd/system/limelet-registrar.service.d/50-tls.conf
install -m 0640 -g keylime $ca/cacert.crt /etc/keylime/verifier-ca.crt
printf '[agent]\ntcti = "swtpm:host=127.0.0.1,port=2321"\ntrusted_client_ca = "%s"\n' \
  /etc/keylime/verifier-ca.crt > /etc/keylime/agent.conf.d/50-site.conf
printf 'tls_dir = "%s"\naccept_tpm_encryption_algs = "ecc,rsa,ecc256,rsa2048"\n' $ca \
  > /etc/limelet/tenant.toml
systemctl daemon-reload
systemctl start limelet-registrar.service limelet-agent.service
"""
# What the administrator wrote; everything else must be gone after purge.
ADMIN_FILES = (
    "/etc/keylime/agent.conf.d/50-site.conf",
    "/etc/keylime/verifier-ca.crt",
)


@pytest.mark.parametrize("recommends", [True, False], ids=["recommends", "no-recommends"])
def test_debian13_install_attest_stop_purge(
    deb_dir: Path, tmp_path: Path, recommends: bool
) -> None:
    require_nspawn()
    root = unpack(tmp_path / "root")
    _install(root, deb_dir, recommends)
    with booted(root, tmp_path / "nspawn.log") as box:
        box.sh(_SWTPM)
        # Listening on 2321 (0x0911) in /proc/net/tcp (state 0A); swtpm_ioctl -i would reset it.
        box.wait_for("grep -q ':0911 00000000:0000 0A' /proc/net/tcp", "swtpm did not start")
        box.sh("systemctl start limelet-verifier.service")
        box.wait_for(f"test -s {CA_DIR}/client-private.pem", "the verifier made no CA")
        box.sh(_CONFIGURE)
        for service in SERVICES:
            box.wait_for(f"systemctl is-active {service}.service", f"{service} is not active")
        assert box.sh("systemctl is-active var-lib-keylime-secure.mount").stdout == "active\n"
        _attest(box)
        if recommends:
            _record_security(box)
        _stop(box)
        _purge(box)


def _install(root: Path, deb_dir: Path, recommends: bool) -> None:
    target = root / DEB_DIR.lstrip("/")
    target.mkdir(parents=True)
    debs = []
    for deb in sorted(deb_dir.glob("*.deb")):
        (target / deb.name).write_bytes(deb.read_bytes())
        debs.append(f"./{deb.name}")
    flag = "--install-recommends" if recommends else "--no-install-recommends"
    script = (f"apt-get update -q && cd {DEB_DIR} && "
              f"apt-get install -y -q {flag} {' '.join(debs)}")  # fmt: skip
    # Not booted yet, with the host's network: apt fetches the dependencies from Debian.
    run(["systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit",
         "--setenv=DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c", script],
        env={"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}, timeout=1800)  # fmt: skip
    status = run(["dpkg", f"--root={root}", "-l", *ALL_PACKAGES]).stdout
    assert all(re.search(rf"^ii  {p} ", status, re.MULTILINE) for p in ALL_PACKAGES), status
    # The agent's TPM library must come as a Depends, not only with recommends.
    pytss = run(["dpkg-query", f"--root={root}", "-W", "-f=${Version}", "python3-tpm2-pytss"])
    assert (
        run(["dpkg", "--compare-versions", pytss.stdout, "ge", "2.1"], check=False).returncode == 0
    )


def _attest(box: Container) -> None:
    registered = box.sh(
        "for i in $(seq 120); do journalctl -u limelet-agent.service -o cat | "
        f"grep -q 'Activated agent {AGENT_ID}' && exit 0; sleep 1; done; exit 1",
        check=False,
    )
    journal = box.sh("journalctl -u limelet-agent.service -u swtpm.service -o cat").stdout
    assert registered.returncode == 0, f"the agent did not register and activate:\n{journal}"
    box.sh("echo limelet > /root/payload.txt")
    added = box.sh(
        f"cd /root && limelet-tenant --json add {AGENT_ID} -f /root/payload.txt "
        "--ek-ca-dir /var/lib/swtpm-localca",
        check=False,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    first = _count(box)
    box.wait_for(
        f"limelet-tenant --json status {AGENT_ID} | "
        f"grep -E '\"attestation_count\": ([{ATTESTATIONS}-9]|[1-9][0-9])'",
        "the verifier's attestation count did not rise",
        timeout=ATTESTED_WITHIN_SECONDS,
    )
    assert _count(box) > first


def _count(box: Container) -> int:
    body = json.loads(box.sh(f"limelet-tenant --json status {AGENT_ID}").stdout)
    assert body["ok"] is True, body
    return int(body["result"][AGENT_ID]["attestation_count"])


def _record_security(box: Container) -> None:
    units = " ".join(f"{s}.service" for s in SERVICES)
    report = box.sh(f"systemd-analyze --version | head -1; for u in {units}; do "
                    "systemd-analyze security --no-pager $u; done").stdout  # fmt: skip
    levels = re.findall(r"Overall exposure level for (\S+): ([\d.]+)", report)
    assert [u for u, _ in levels] == [f"{s}.service" for s in SERVICES], report
    assert all(float(level) <= 2.5 for _, level in levels), levels
    SECURITY_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    SECURITY_RESULTS.write_text(
        "# systemd-analyze security of the live units, Debian 13 under systemd-nspawn\n"
        "# (tests/packaging/test_debian13.py)\n" + report,
        encoding="utf-8",
    )


def _stop(box: Container) -> None:
    box.sh("systemctl stop " + " ".join(f"{s}.service" for s in SERVICES))
    for service in SERVICES:
        shown = box.sh(f"systemctl show -p ActiveState,Result {service}.service").stdout
        assert shown.split() == ["Result=success", "ActiveState=inactive"], (service, shown)
    journal = box.sh("journalctl -u limelet-agent.service --no-pager -o cat").stdout
    assert f"Registered agent {AGENT_ID}" in journal
    assert "Agent stopped" in journal
    assert "Traceback" not in journal
    # Debian's Hypercorn 0.17 logs "ASGI Framework Lifespan error" with a traceback when its
    # worker is cancelled; the services stop through Hypercorn's graceful shutdown instead.
    for service in ("limelet-registrar", "limelet-verifier"):
        log = box.sh(f"journalctl -u {service}.service --no-pager -o cat").stdout
        assert "Traceback" not in log and "Lifespan error" not in log, (service, log)


def _purge(box: Container) -> None:
    owned = box.sh("dpkg -L " + " ".join(ALL_PACKAGES)).stdout.split()
    box.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q " + " ".join(ALL_PACKAGES))
    status = box.sh("dpkg -l " + " ".join(ALL_PACKAGES), check=False).stdout
    assert not re.search(r"^(ii|rc) ", status, re.MULTILINE), status
    left = box.sh("for p in " + " ".join(owned) + "; do [ -f $p ] && echo $p; done; true").stdout
    assert left.split() == []
    for state in ("/var/lib/limelet", "/var/lib/keylime"):
        assert box.sh(f"test -e {state}", check=False).returncode != 0, state
    remaining = box.sh("find /etc/keylime -type f | sort").stdout.split()
    assert remaining == sorted(ADMIN_FILES)
