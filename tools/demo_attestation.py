"""The demo's attestation chapter: ``limelet-verifier`` and ``limelet-tenant`` at work.

The operator adds the enrolled agent to the verifier with a PCR policy and a secret payload;
the verifier quotes it every second; then PCR 17 is changed behind the agent's back through
the software TPM's control channel (a hash sequence at locality 4, as a late launch would),
and the verifier notices on the next quote.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tools.demo_registration import (
    LOOPBACK,
    POLL_INTERVAL_S,
    SCRIPTS,
    Enrolment,
    mtls_get,
    running,
    wait_for,
)
from tools.demo_registration import _free_port as free_port
from tools.demo_status import show_status_page, status_page_line, status_url
from tools.narrate import detail, say
from tools.procfs import peak_rss_mb

AGENT_ID = "demo-agent"
QUOTE_INTERVAL_S = 1.0
# Long enough to see several quotes at QUOTE_INTERVAL_S.
WATCH_S = 4.0
# Two quote intervals plus margin for a loaded machine.
FAIL_TIMEOUT_S = 20.0
TENANT_TIMEOUT_S = 120
# PCR 17 (DRTM) starts as all ones on a TPM that saw no late launch.
PCR17_POLICY = {"17": ["ff" * 32]}
PAYLOAD = b"A secret only an attested agent may read: the database password is hunter2.\n"
FAILED_STATES = ("Invalid Quote", "Failed", 7, 9)


def write_verifier_config(en: Enrolment, port: int, status_port: int) -> Path:
    config = en.workdir / "verifier.toml"
    config.write_text(
        f'uuid = "demo-verifier"\nip = "{LOOPBACK}"\nport = {port}\n'
        f'tls_dir = "{en.tls_dir}"\ndata_dir = "{en.workdir / "verifier"}"\n'
        f"quote_interval = {QUOTE_INTERVAL_S}\nretry_interval = {QUOTE_INTERVAL_S}\n"
        + status_page_line(status_port),
        encoding="utf-8",
    )
    return config


def write_tenant_config(en: Enrolment, verifier_port: int) -> Path:
    config = en.workdir / "tenant.toml"
    config.write_text(
        f'verifier_ip = "{LOOPBACK}"\nverifier_port = {verifier_port}\n'
        f'registrar_ip = "{LOOPBACK}"\nregistrar_tls_port = {en.registrar_tls_port}\n'
        f'tls_dir = "{en.tls_dir}"\ntpm_cert_store = "{en.ek_store}"\n',
        encoding="utf-8",
    )
    return config


def tenant(config: Path, *args: str) -> Any:
    """Run ``limelet-tenant --json``; return its result, or stop the demo with its message."""
    command = [str(SCRIPTS / "limelet-tenant"), *args, "-c", str(config), "--json"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=TENANT_TIMEOUT_S, check=False
    )
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        reply = {"ok": False, "message": done.stderr[-2000:]}
    if not reply.get("ok"):
        raise SystemExit(f"demo failure: limelet-tenant {args[0]}: {reply.get('message')}")
    return reply["result"]


def agent_status(config: Path) -> dict[str, Any]:
    return dict(tenant(config, "status", AGENT_ID)[AGENT_ID])


def show_attesting(config: Path, en: Enrolment) -> None:
    first = agent_status(config)
    time.sleep(WATCH_S)
    later = agent_status(config)
    say("14", "The verifier quotes the agent every second and checks each quote:")
    detail(f"state: {later['operational_state']}")
    detail(f"successful attestations: {first['attestation_count']} -> {later['attestation_count']}")
    secure = en.workdir / "agent-data" / "secure" / "unzipped" / "decrypted_payload"
    detail(f"the payload in the agent's secure directory reads: {secure.read_text().strip()!r}")
    detail(f"the agent's peak memory so far: {peak_rss_mb(en.agent.pid):.1f} MB resident")


def tamper(ctrl_port: int) -> None:
    say("15", "Someone changes PCR 17 behind the agent's back (a hash sequence on the TPM).")
    subprocess.run(
        ["swtpm_ioctl", "--tcp", f"{LOOPBACK}:{ctrl_port}", "-h", "unexpected code"],
        check=True,
        capture_output=True,
        timeout=TENANT_TIMEOUT_S,
    )


def wait_for_failure(config: Path) -> dict[str, Any]:
    deadline = time.monotonic() + FAIL_TIMEOUT_S
    while time.monotonic() < deadline:
        record = agent_status(config)
        if record["operational_state"] in FAILED_STATES:
            return record
        time.sleep(POLL_INTERVAL_S)
    raise SystemExit("demo failure: the verifier did not notice the changed PCR")


def attest(en: Enrolment, ctrl_port: int) -> None:
    port, status_port = free_port(), free_port()
    ver_conf = write_verifier_config(en, port, status_port)
    say("12", "Starting limelet-verifier (mTLS, SQLite) with the same CA as the registrar.")
    log = en.workdir / "verifier.log"
    env = dict(os.environ)
    with running([str(SCRIPTS / "limelet-verifier"), "-c", str(ver_conf)], env, log) as ver:
        wait_for("the verifier", lambda: mtls_get(en.tls_dir, port, "/version")[1], ver, log)
        detail(f"its status page for people, in a browser on this host: {status_url(status_port)}")
        ten_conf = write_tenant_config(en, port)
        payload = en.workdir / "payload.txt"
        payload.write_bytes(PAYLOAD)
        say("13", "The operator runs limelet-tenant add: EK certificate checked, identity quote")
        detail("verified, payload key split between agent and verifier, and --verify proves")
        detail("the agent derived it. Policy: PCR 17 must still be all ones.")
        policy = json.dumps(PCR17_POLICY)
        tenant(ten_conf, "add", AGENT_ID, "--tpm-policy", policy, "-f", str(payload), "--verify")
        show_attesting(ten_conf, en)
        tamper(ctrl_port)
        failed = wait_for_failure(ten_conf)
        detail(f"the verifier's verdict: {failed['operational_state']}")
        detail(f"reason: {failed.get('last_event_id')} (severity {failed.get('severity_level')})")
        show_status_page(status_port, en.workdir)
