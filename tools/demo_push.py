"""The demo's push-mode chapter: a device behind NAT that the verifier never connects to.

rust-keylime 0.2.9's ``keylime_push_model_agent`` (from ../shared/peers) runs on a freshly
manufactured swtpm.  It registers with ``limelet-registrar``, the operator enrols it with
``limelet-tenant add --push-model`` (no agent contact), and then the agent opens its own
sessions with ``limelet-verifier`` (API 3.0: TPM proof of possession, then quotes it pushes).
``limelet-tenant status`` shows the verifier's ``attestation_status`` and count.
Then PCR 23 is extended on that TPM (tpm2-abrmd shares the swtpm between the agent and
``tpm2_pcrextend``) and the next pushed quote turns the agent FAIL.

The verifier's push routes live in ``verifier_lite.push``; in a build without them, or
without the rust-keylime peer, this chapter says so and the demo goes on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tools.demo_attestation import tenant
from tools.demo_registration import (
    LOOPBACK,
    SCRIPTS,
    mtls_get,
    running,
    wait_for,
    write_pki,
    write_registrar_config,
)
from tools.demo_registration import _free_port as free_port
from tools.narrate import detail, say
from tools.swtpm import Swtpm, manufacture
from tools.tpm_broker import TpmBroker

PEER_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers" / "rust-keylime-0.2.9"
QUOTE_INTERVAL_S = 1
# Pushes to wait for; each takes about QUOTE_INTERVAL_S once the session is open.
PUSHES_TO_SHOW = 3
# Registration, PoP and the first pushes take a few seconds; a loaded machine needs more.
PUSH_TIMEOUT_S = 90.0
POLL_S = 0.5
TAMPER_PCR = 23
TPM_POLICY = json.dumps({str(TAMPER_PCR): ["00" * 32]})
# rust-keylime's shipped agent.conf, with only what this machine needs changed.
CONF_CHANGES = (
    ('run_as = "keylime:tss"', 'run_as = ""'),
    ('verifier_url = "https://localhost:8881"', 'verifier_url = "{verifier_url}"'),
    ('verifier_tls_ca_cert = "default"', 'verifier_tls_ca_cert = "{ca}"'),
    ('measuredboot_ml_path = "default"', 'measuredboot_ml_path = "{nothing}"'),
    ('ima_ml_path = "default"', 'ima_ml_path = "{nothing}"'),
    ("registrar_port = 8890", "registrar_port = {registrar_port}"),
    ("attestation_interval_seconds = 60", "attestation_interval_seconds = 1"),
    ("exponential_backoff_initial_delay = 10000", "exponential_backoff_initial_delay = 1000"),
)


def available() -> str:
    """Empty when the chapter can run, else why not."""
    if importlib.util.find_spec("verifier_lite.push") is None:
        return "this build's verifier has no push routes (verifier_lite.push is not installed)"
    if not (PEER_DIR / "keylime_push_model_agent").is_file():
        return f"rust-keylime's push agent is not in {PEER_DIR}"
    return ""


def push_agent_conf(workdir: Path, agent_id: str, **values: Any) -> Path:
    text = (PEER_DIR / "keylime-agent.conf").read_text(encoding="utf-8")
    keylime_dir = workdir / "push-agent"
    (keylime_dir / "actions").mkdir(parents=True, exist_ok=True)
    edits = (
        *CONF_CHANGES,
        ('keylime_dir = "/var/lib/keylime"', f'keylime_dir = "{keylime_dir}"'),
        ('uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"', f'uuid = "{agent_id}"'),
        ('"/usr/libexec/keylime"', f'"{keylime_dir / "actions"}"'),
    )
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"demo failure: rust-keylime's agent.conf has no {old!r}")
        text = text.replace(old, new.format(nothing=workdir / "none", **values))
    conf = workdir / "push-agent.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


def write_configs(workdir: Path, tls_dir: Path, ports: dict[str, int]) -> tuple[Path, Path]:
    verifier = workdir / "push-verifier.toml"
    verifier.write_text(
        f'uuid = "demo-push-verifier"\nip = "{LOOPBACK}"\nport = {ports["verifier"]}\n'
        f'tls_dir = "{tls_dir}"\ndata_dir = "{workdir / "verifier"}"\n'
        f"quote_interval = {QUOTE_INTERVAL_S}\n"
        # One verifier for pull and push agents (Keylime needs one per mode).
        f'mode = "mixed"\npush_ip = "{LOOPBACK}"\npush_port = {ports["push"]}\n',
        encoding="utf-8",
    )
    ten = workdir / "push-tenant.toml"
    ten.write_text(
        f'verifier_ip = "{LOOPBACK}"\nverifier_port = {ports["verifier"]}\n'
        f'registrar_ip = "{LOOPBACK}"\nregistrar_tls_port = {ports["registrar_tls"]}\n'
        f'tls_dir = "{tls_dir}"\ntpm_cert_store = "{workdir / "tpm_cert_store"}"\n',
        encoding="utf-8",
    )
    return verifier, ten


def _pushed(ten: Path, agent_id: str) -> Any:
    record = tenant(ten, "status", agent_id)[agent_id]
    return record if record.get("attestation_count", 0) >= PUSHES_TO_SHOW else None


def run(workdir: Path) -> None:
    why_not = available()
    if why_not:
        say("push", f"Push mode (API 3.0) is not available here: {why_not}; skipping it.")
        return
    workdir = workdir / "push"
    # A TPM of its own: the demo's first TPM was stopped without TPM2_Shutdown, so its clock
    # is no longer "safe", and a verifier rightly refuses quotes from it (as Keylime does).
    template = manufacture(workdir / "manufactured")
    tls_dir = workdir / "cv_ca"
    write_pki(tls_dir)
    names = ("registrar", "registrar_tls", "verifier", "push")
    ports = {name: free_port() for name in names}
    reg_conf = write_registrar_config(
        workdir, template.ca_dir, ports["registrar"], ports["registrar_tls"]
    )
    ver_conf, ten_conf = write_configs(workdir, tls_dir, ports)
    agent_id = str(uuid.uuid4())
    say("push", "Push mode: a device behind NAT that no verifier can reach.")
    # tpm2-abrmd shares the one swtpm connection between the agent and the tamper below.
    with (
        Swtpm(template, workdir / "swtpm", copy=False) as swtpm,
        TpmBroker(swtpm.tcti, workdir / "broker") as broker,
    ):
        env = {**os.environ, **broker.env, "TCTI": broker.tcti, "RUST_LOG": "info"}
        reg_log, ver_log = workdir / "registrar.log", workdir / "verifier.log"
        reg_cmd = [str(SCRIPTS / "limelet-registrar"), "-c", str(reg_conf)]
        ver_cmd = [str(SCRIPTS / "limelet-verifier"), "-c", str(ver_conf)]
        with running(reg_cmd, env, reg_log) as reg, running(ver_cmd, env, ver_log) as ver:
            for what, port, proc, log in (
                ("the registrar", ports["registrar_tls"], reg, reg_log),
                ("the verifier", ports["verifier"], ver, ver_log),
            ):
                wait_for(what, lambda p=port: mtls_get(tls_dir, p, "/version")[1], proc, log)
            detail(f"limelet-verifier takes pushes on {LOOPBACK}:{ports['push']} (server TLS only)")
            url = f"https://{LOOPBACK}:{ports['push']}"
            env["KEYLIME_AGENT_CONFIG"] = str(
                push_agent_conf(
                    workdir,
                    agent_id,
                    verifier_url=url,
                    ca=tls_dir / "cacert.crt",
                    registrar_port=ports["registrar"],
                )
            )
            agent_log = workdir / "push-agent.log"
            agent_cmd = [str(PEER_DIR / "keylime_push_model_agent")]
            with running(agent_cmd, env, agent_log) as agent:
                path = f"/v2.6/agents/{agent_id}"
                active = lambda: mtls_get(tls_dir, ports["registrar_tls"], path)[1]  # noqa: E731
                wait_for("the push agent to register", active, agent, agent_log)
                _story(ten_conf, agent_id, agent, agent_log)
                _tamper(ten_conf, agent_id, broker, agent_log)


def _story(ten: Path, agent_id: str, agent: Any, agent_log: Path) -> None:
    detail(f"rust-keylime's push agent {agent_id[:8]}... registered and activated its AK.")
    added = tenant(ten, "add", agent_id, "--push-model", "--tpm-policy", TPM_POLICY)
    detail(
        f"limelet-tenant add --push-model: enrolled at {added['verifier']}, agent never contacted"
    )
    deadline = time.monotonic() + PUSH_TIMEOUT_S
    record = None
    while record is None:
        if agent.poll() is not None or time.monotonic() > deadline:
            status = tenant(ten, "status", agent_id)
            raise SystemExit(
                f"demo failure: no pushes; status {status}\n{agent_log.read_text()[-2000:]}"
            )
        record = _pushed(ten, agent_id)
        time.sleep(POLL_S)
    detail(
        f"the agent pushed {record['attestation_count']} quotes; status "
        f"{record['attestation_status']}, last success at {record['last_successful_attestation']}"
    )


def _tamper(ten: Path, agent_id: str, broker: TpmBroker, agent_log: Path) -> None:
    """Extend PCR 23 behind the agent's back: its next pushed quote no longer fits the policy."""
    digest = hashlib.sha256(b"tampered behind the push agent's back").hexdigest()
    subprocess.run(
        ["tpm2_pcrextend", f"{TAMPER_PCR}:sha256={digest}"],
        env={**os.environ, **broker.env, "TPM2TOOLS_TCTI": broker.tcti},
        check=True,
        capture_output=True,
        timeout=30,
    )
    say("push", f"Someone changes PCR {TAMPER_PCR} on the device's TPM (a tamper).")
    deadline = time.monotonic() + PUSH_TIMEOUT_S
    record = tenant(ten, "status", agent_id)[agent_id]
    while record.get("attestation_status") != "FAIL":
        if time.monotonic() > deadline:
            raise SystemExit(
                f"demo failure: no FAIL after the tamper; status {record}\n"
                f"{agent_log.read_text()[-2000:]}"
            )
        time.sleep(POLL_S)
        record = tenant(ten, "status", agent_id)[agent_id]
    detail(
        f"the next pushed quote showed it: push agent status {record['attestation_status']} "
        f"({record.get('last_event_id')})"
    )
