"""Keylime 6.6.0's Python agent, unmodified, registers and activates against registrar_lite.

6.6.0 is the last Keylime release with a Python agent; it drives the TPM with tpm2-tools
(``TPM2TOOLS_TCTI``, here pointed at swtpm) and speaks REST API 2.1 to the registrar
(keylime/registrar_client.py: ``POST /v2.1/agents/{id}``, then ``PUT /v2.1/agents/{id}/activate``).
It sends JSON without a Content-Type and, since swtpm has an EK certificate in NV, ``ekcert``
without ``ek_tpm``; registrar_lite takes the EK from the certificate, which it checks against
swtpm's local CA.  Once the registrar's mTLS API shows the agent, the agent is stopped.

As root the agent mounts a tmpfs at ``$KEYLIME_DIR/secure`` (keylime/secure_mount.py) and keeps
it after SIGKILL, so teardown unmounts it if it is still there.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509

from attest_protocol.quote import KeylimeQuote, verify_quote
from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.public import parse_tpm2b_public
from registrar_lite.server import serve_registrar
from tests.cv_ca import make_tls_files
from tests.registrar.support import RunningRegistrar, registrar_config
from tools import keylime_agent66
from tools.keylime_process import ServiceProcess, log_tail
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c06e66"  # 6.6.0 insists on a UUID (validators.py)
LOOPBACK = "127.0.0.1"
API = "v2.1"  # keylime/api_version.py CURRENT_VERSION in 6.6.0
# tpm2_createek + tpm2_createak on swtpm and a 2048-bit RSA key take a few seconds.
REGISTRATION_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0
TOOL_TIMEOUT_SECONDS = 30.0
# TCG EK Credential Profile 2.0, 2.2.1.5: the RSA-2048 EK's persistent handle (swtpm_setup).
SWTPM_RSA_EK_HANDLE = "0x81010001"
NONCE = "limelet66nonce"  # 6.6.0 accepts only alphanumeric nonces (keylime_agent.py do_GET)


def agent_conf(agent_port: int, registrar_port: int, trusted_client_ca: Path) -> str:
    """Every [agent] option 6.6.0's agent reads on the registration path, and no more."""
    options = {
        "version": "2.0",
        "uuid": AGENT_ID,
        "ip": LOOPBACK,
        "port": str(agent_port),
        "contact_ip": LOOPBACK,
        "contact_port": str(agent_port),
        "registrar_ip": LOOPBACK,
        "registrar_port": str(registrar_port),
        "enable_agent_mtls": "True",
        "tls_dir": "default",  # the secure mount
        "server_key": "default",
        "server_key_password": "",
        "server_cert": "default",
        "trusted_client_ca": f"['{trusted_client_ca}']",
        "enc_keyname": "derived_tci_key",
        "dec_payload_file": "decrypted_payload",
        "secure_size": "1m",
        "tpm_ownerpassword": "",  # a fresh swtpm copy: the agent sets a random one
        "extract_payload_zip": "True",
        "enable_revocation_notifications": "False",
        "revocation_notification_ip": LOOPBACK,
        "revocation_notification_port": "8992",
        "revocation_cert": "default",
        "revocation_actions": "[]",
        "payload_script": "",
        "enable_insecure_payload": "False",
        "measure_payload_pcr": "-1",
        "exponential_backoff": "True",
        "max_retries": "4",
        "retry_interval": "2",
        "tpm_hash_alg": "sha256",
        "tpm_encryption_alg": "rsa",
        "tpm_signing_alg": "rsassa",
        "ek_handle": "generate",
        "run_as": "",  # stay root: no keylime user here
    }
    return "[agent]\n" + "".join(f"{key} = {value}\n" for key, value in options.items())


@dataclass(frozen=True)
class Keylime66Agent:
    process: ServiceProcess
    port: int
    work: Path

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def keylime66_agent(
    tmp_path: Path, swtpm: Swtpm, registrar: RunningRegistrar
) -> Iterator[Keylime66Agent]:
    """Run ``keylime_agent`` in its own process group; always stop it and unmount its tmpfs."""
    keylime_agent66.ensure()
    work = tmp_path / "keylime66"
    work.mkdir()
    port = free_port()
    conf = work / "agent.conf"
    conf.write_text(agent_conf(port, registrar.ports.port, registrar.tls.ca_cert))
    logging_conf = work / "logging.conf"
    logging_conf.write_text(keylime_agent66.LOGGING_CONF)
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "KEYLIME_DIR": str(work),
        "KEYLIME_AGENT_CONFIG": str(conf),
        "KEYLIME_LOGGING_CONFIG": str(logging_conf),
        "TPM2TOOLS_TCTI": swtpm.tcti,  # tpm/tpm_main.py reads this, not TCTI
    }
    process = ServiceProcess.spawn(
        "keylime_agent 6.6.0",
        [str(keylime_agent66.agent_bin())],
        env,
        work,
        tmp_path / "keylime66-agent.log",
    )
    try:
        yield Keylime66Agent(process, port, work)
    finally:
        process.terminate()
        process.reap(STOP_GRACE_SECONDS)
        secure = work / "secure"
        if _is_mount_point(secure):  # SIGKILLed before its own umount
            subprocess.run(["umount", str(secure)], check=False, capture_output=True)


def _is_mount_point(path: Path) -> bool:
    target = str(path).replace(" ", r"\040")
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        return any(line.split()[4] == target for line in mounts)


def read_swtpm_ek(swtpm: Swtpm, scratch: Path) -> bytes:
    """The RSA EK swtpm_setup made persistent (TPM2B_PUBLIC), read before the agent runs."""
    out = scratch / "ek.pub"
    subprocess.run(
        ["tpm2_readpublic", "-c", SWTPM_RSA_EK_HANDLE, "-f", "tss", "-o", str(out)],
        env={"PATH": "/usr/bin:/bin", "TPM2TOOLS_TCTI": swtpm.tcti},
        check=True,
        capture_output=True,
        timeout=TOOL_TIMEOUT_SECONDS,
    )
    return out.read_bytes()


async def start_registrar(nursery: trio.Nursery, tmp_path: Path, swtpm: Swtpm) -> RunningRegistrar:
    store = tmp_path / "tpm_cert_store"
    store.mkdir()
    for cert in (swtpm.state.issuer_cert, swtpm.state.root_cert):
        shutil.copy(cert, store / cert.name)
    tls = make_tls_files(tmp_path / "tls")
    config = registrar_config(tmp_path / "registrar", tls, tpm_cert_store=store)
    return RunningRegistrar(config, await nursery.start(serve_registrar, config), tls)


async def wait_until_shown(registrar: RunningRegistrar, agent: Keylime66Agent) -> dict[str, Any]:
    """The registrar's mTLS view of the agent, polled until it is active."""
    path = f"/{API}/agents/{AGENT_ID}"
    async with registrar.admin_client() as admin:
        with trio.move_on_after(REGISTRATION_TIMEOUT_SECONDS):
            while True:
                code = agent.process.popen.poll()
                if code is not None:
                    log = log_tail(agent.process.log_path)
                    pytest.fail(f"keylime_agent exited with {code}:\n{log}")
                response = await admin.get(path)
                if response.status_code == httpx.codes.OK:
                    results: dict[str, Any] = response.json()["results"]
                    return results
                await trio.sleep(POLL_INTERVAL_SECONDS)
    log = log_tail(agent.process.log_path)
    pytest.fail(f"agent not active after {REGISTRATION_TIMEOUT_SECONDS:.0f} s:\n{log}")


async def identity_quote(
    registrar: RunningRegistrar, agent: Keylime66Agent, mtls_cert_pem: str
) -> dict[str, Any]:
    """Ask the running agent for an identity quote over mTLS, as Keylime's tenant does.

    The agent's server certificate must be the one it registered (the only trust anchor here);
    the client certificate comes from the CA named in its ``trusted_client_ca``.
    """
    ctx = ssl.create_default_context(cadata=mtls_cert_pem)
    ctx.load_cert_chain(str(registrar.tls.client_cert), str(registrar.tls.client_key))
    async with httpx.AsyncClient(base_url=agent.url, verify=ctx, timeout=30.0) as client:
        response = await client.get(f"/{API}/quotes/identity", params={"nonce": NONCE})
    assert response.status_code == httpx.codes.OK, response.text
    results: dict[str, Any] = response.json()["results"]
    return results


async def test_keylime66_agent_registers_and_activates(
    nursery: trio.Nursery, swtpm: Swtpm, tmp_path: Path
) -> None:
    tpm_ek = read_swtpm_ek(swtpm, tmp_path)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    with keylime66_agent(tmp_path, swtpm, registrar) as agent:
        shown = await wait_until_shown(registrar, agent)
        quote = await identity_quote(registrar, agent, shown["mtls_cert"])
    log = agent.process.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Registration activated for agent" in log
    row = registrar.stored(AGENT_ID)
    assert row is not None
    assert row["active"] == 1

    # The EK: 6.6.0 sends only its certificate; registrar_lite checked it against swtpm's CA
    # and derived ek_tpm from it, which must be the EK the TPM really holds.
    ekcert = x509.load_der_x509_certificate(base64.b64decode(shown["ekcert"]))
    issuer = x509.load_pem_x509_certificate(swtpm.state.issuer_cert.read_bytes())
    assert ekcert.issuer == issuer.subject
    assert base64.b64decode(shown["ek_tpm"]) == tpm_ek

    # The AK: the registered aik_tpm verifies the quote the agent signs with its AK.
    ak = parse_tpm2b_public(base64.b64decode(shown["aik_tpm"]))
    verified = verify_quote(
        KeylimeQuote.parse(quote["quote"]), ak, NONCE.encode("ascii"), hash_alg=TpmAlg.SHA256
    )
    assert verified.hash_alg == TpmAlg.SHA256
    assert not _is_mount_point(agent.work / "secure")
