"""The demo's registration chapter: the real ``limelet-registrar`` and ``limelet-agent``.

Both run as the programs a user installs, with config files written here: the registrar
trusts the swtpm's EK CA, the agent enrols its TPM identity, and the operator's mTLS view of
the registrar shows the agent active with the same EK and AK.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest_protocol.pki import create_ca, issue_client_cert, issue_server_cert
from tools.narrate import detail, say

LOOPBACK = "127.0.0.1"
AGENT_ID = "demo-agent"
# Start-up of either program takes well under a second here; allow for a loaded machine.
READY_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 10.0
SCRIPTS = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def write_pki(tls_dir: Path) -> None:
    """Keylime's cv_ca file names: CA, registrar server identity, operator client identity."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca = create_ca("limelet demo CA")
    server = issue_server_cert(ca, "registrar", ips=[LOOPBACK], dns_names=["localhost"])
    client = issue_client_cert(ca, "operator")
    files = {
        "cacert.crt": ca.cert_pem,
        "server-cert.crt": server.cert_pem,
        "server-private.pem": server.key_pem,
        "client-cert.crt": client.cert_pem,
        "client-private.pem": client.key_pem,
    }
    for name, data in files.items():
        (tls_dir / name).write_bytes(data)
        (tls_dir / name).chmod(0o600)


def write_registrar_config(workdir: Path, ek_ca_dir: Path, port: int, tls_port: int) -> Path:
    store = workdir / "tpm_cert_store"
    store.mkdir(parents=True, exist_ok=True)
    for pem in sorted(ek_ca_dir.glob("*cert*.pem")):
        shutil.copy(pem, store / pem.name)
    config = workdir / "registrar.toml"
    config.write_text(
        f'ip = "{LOOPBACK}"\nport = {port}\ntls_port = {tls_port}\n'
        f'data_dir = "{workdir / "registrar"}"\ntls_dir = "{workdir / "cv_ca"}"\n'
        f'tpm_cert_store = "{store}"\n',
        encoding="utf-8",
    )
    return config


def write_agent_config(workdir: Path, tcti: str, registrar_port: int, agent_port: int) -> Path:
    """The agent serves mTLS on ``agent_port`` and trusts the demo CA's clients."""
    config = workdir / "agent.conf"
    config.write_text(
        "[agent]\n"
        f'uuid = "{AGENT_ID}"\ntcti = "{tcti}"\nkeylime_dir = "{workdir / "agent-data"}"\n'
        f'registrar_ip = "{LOOPBACK}"\nregistrar_port = {registrar_port}\n'
        f"port = {agent_port}\ncontact_port = {agent_port}\n"
        f'trusted_client_ca = "{workdir / "cv_ca" / "cacert.crt"}"\n'
        # Started as root, the agent gives up root once its TPM, logs and keys are open.
        'run_as = "nobody:nogroup"\n',
        encoding="utf-8",
    )
    return config


@dataclass(frozen=True)
class Enrolment:
    """What the next chapters need while registrar and agent keep running."""

    workdir: Path
    tls_dir: Path
    ek_store: Path
    registrar_tls_port: int
    agent: subprocess.Popen[bytes]
    agent_log: Path


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def mtls_get(tls_dir: Path, tls_port: int, path: str) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(tls_dir / "cacert.crt"))
    context.load_cert_chain(tls_dir / "client-cert.crt", tls_dir / "client-private.pem")
    url = f"https://{LOOPBACK}:{tls_port}{path}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), None


def wait_for(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo failure: {what}: process exited\n{log.read_text()[-2000:]}")
        try:
            result = check()
        except OSError:
            result = None
        if result is not None:
            return result
        time.sleep(POLL_INTERVAL_S)
    raise SystemExit(f"demo failure: timed out waiting for {what}\n{log.read_text()[-2000:]}")


@contextmanager
def enrolled(
    workdir: Path, tcti: str, ek_ca_dir: Path, ek_public: bytes, ak_public: bytes
) -> Iterator[Enrolment]:
    """Run registrar and agent, show the registrar's record, and keep both running."""
    port, tls_port, agent_port = _free_port(), _free_port(), _free_port()
    tls_dir = workdir / "cv_ca"
    write_pki(tls_dir)
    env = {**os.environ, "TCTI": tcti}
    reg_conf = write_registrar_config(workdir, ek_ca_dir, port, tls_port)
    say("9", "Starting limelet-registrar: plain HTTP for agents, mTLS for operators.")
    reg_log = workdir / "registrar.log"
    with running([str(SCRIPTS / "limelet-registrar"), "-c", str(reg_conf)], env, reg_log) as reg:
        wait_for("the registrar", lambda: mtls_get(tls_dir, tls_port, "/version")[1], reg, reg_log)
        detail(f"listening on {LOOPBACK}:{port} (agents) and {LOOPBACK}:{tls_port} (mTLS)")
        env["KEYLIME_AGENT_CONFIG"] = str(write_agent_config(workdir, tcti, port, agent_port))
        say("10", f"Starting limelet-agent as '{AGENT_ID}': it registers its EK, EK certificate")
        detail("and AK, answers the credential challenge, activates, and serves over mTLS;")
        detail("started as root, it drops to nobody:nogroup once its TPM and keys are open.")
        agent_log = workdir / "agent.log"
        with running([str(SCRIPTS / "limelet-agent")], env, agent_log) as agent:
            record = wait_for(
                "the agent to activate", lambda: _record(tls_dir, tls_port), agent, agent_log
            )
            show_record(record, ek_public, ak_public)
            yield Enrolment(
                workdir, tls_dir, workdir / "tpm_cert_store", tls_port, agent, agent_log
            )
        _unmount_secure_dir(workdir / "agent-data" / "secure")


def show_record(record: Any, ek_public: bytes, ak_public: bytes) -> None:
    say("11", "The operator asks the registrar (over mTLS) what it knows of the agent:")
    detail(
        f"active, with EK certificate checked against the TPM maker's CA: {bool(record['ekcert'])}"
    )
    detail(f"EK is this TPM's: {record['ek_tpm'] == base64.b64encode(ek_public).decode()}")
    detail(
        f"AK is the one quoting above: {record['aik_tpm'] == base64.b64encode(ak_public).decode()}"
    )
    detail(
        f"registrations so far: {record['regcount']}; agent contact {record['ip']}:{record['port']}"
    )


def _unmount_secure_dir(path: Path) -> None:
    """The agent mounts a tmpfs for payloads when it runs as root; leave nothing mounted."""
    if os.path.ismount(path):
        subprocess.run(["umount", str(path)], check=False, timeout=STOP_TIMEOUT_S)


def _record(tls_dir: Path, tls_port: int) -> Any:
    status, body = mtls_get(tls_dir, tls_port, f"/v2.1/agents/{AGENT_ID}")
    return body["results"] if status == 200 and body else None
