"""The pieces of bench.agent_footprint: the verifier's identity, the registrar, how each agent
is configured, started, probed and quoted, and what is read from /proc.

Nothing here times anything on its own; bench.agent_footprint decides what is measured.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attest_protocol.pki import create_ca, issue_client_cert
from edge_agent.payload.secure_dir import MOUNTINFO_PATH, mount_fs_type
from tools import keylime_agent66
from tools.demo_registration import LOOPBACK, _free_port, mtls_get

SCRIPTS = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
# Polling /version: short enough not to hide start-up time, long enough not to load the CPU.
POLL_INTERVAL_S = 0.005
# Keylime 6.6.0 creates its EK and AK with tpm2-tools on a first start: tens of seconds.
READY_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 2.0
CURL_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10.0
QUOTE_MASK = "0x10401"  # PCRs 0, 10, 16, as bench.tpm_quote
API = "v2.1"  # both agents serve it (6.6.0: keylime/api_version.py CURRENT_VERSION)
CURL_TIMES = "%{time_appconnect} %{time_starttransfer} %{time_total}"
KEYLIME66_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c06e66"  # 6.6.0 wants a UUID
# swtpm_setup --create-ek-cert makes the RSA-2048 EK persistent here (TCG EK Credential
# Profile's default RSA EK handle); limelet's "persistent EK" run points ek_handle at it.
SWTPM_RSA_EK_HANDLE = "0x81010001"


@dataclass(frozen=True)
class Verifier:
    """The client identity the benchmark uses, and the CA both agents trust."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class AgentSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    server_cert: Optional[Path]  # pinned when set; None: no server verification
    # Run before each start: Keylime 6.6.0 makes a new AK at every start, and the registrar
    # refuses a known agent id with another AK, so its record is deleted first.
    before_start: Optional[Callable[[], None]] = None


@dataclass(frozen=True)
class Registrar:
    port: int
    tls_port: int
    tls_dir: Path

    def up(self) -> bool:
        try:
            return mtls_get(self.tls_dir, self.tls_port, "/version")[1] is not None
        except OSError:
            return False

    def forget(self, agent_id: str) -> None:
        """DELETE the agent's record over the operator's mTLS API (404 is fine)."""
        context = ssl.create_default_context(cafile=str(self.tls_dir / "cacert.crt"))
        context.load_cert_chain(
            self.tls_dir / "client-cert.crt", self.tls_dir / "client-private.pem"
        )
        url = f"https://{LOOPBACK}:{self.tls_port}/{API}/agents/{agent_id}"
        request = urllib.request.Request(url, method="DELETE")
        try:
            with urllib.request.urlopen(  # noqa: S310 -- an https URL built here
                request, context=context, timeout=PROBE_TIMEOUT_S
            ):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def make_verifier(work: Path) -> Verifier:
    ca = create_ca("limelet bench verifier CA")
    client = issue_client_cert(ca, "verifier")
    verifier = Verifier(work / "verifier-ca.crt", work / "verifier.crt", work / "verifier.key")
    verifier.ca.write_bytes(ca.cert_pem)
    verifier.cert.write_bytes(client.cert_pem)
    verifier.key.write_bytes(client.key_pem)
    return verifier


def limelet_env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    """The agent's environment: ours, minus TCTI, with bytecode caching on.

    Installed packages ship compiled bytecode (dh_python3, rpm's brp-python-bytecompile), so
    the agent should not compile its modules at every start; a development shell often sets
    PYTHONDONTWRITEBYTECODE, which would.  The first (unmeasured) start writes the bytecode
    under the work directory, the measured ones read it.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("TCTI", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env.update(extra)
    return env


def limelet_spec(
    work: Path, tcti: str, registrar_port: int, verifier: Verifier, *, agent_id: str,
    ek_handle: str, env: dict[str, str],
) -> AgentSpec:  # fmt: skip
    port, data = _free_port(), work / "data"
    (data / "cv_ca").mkdir(parents=True)
    (data / "cv_ca" / "cacert.crt").write_bytes(verifier.ca.read_bytes())
    config = work / "agent.conf"
    config.write_text(
        "[agent]\n"
        f'uuid = "{agent_id}"\ntcti = "{tcti}"\nkeylime_dir = "{data}"\n'
        f'ip = "{LOOPBACK}"\nport = {port}\ncontact_ip = "{LOOPBACK}"\ncontact_port = {port}\n'
        f'registrar_ip = "{LOOPBACK}"\nregistrar_port = {registrar_port}\n'
        f'ima_ml_path = "{work / "no-ima-log"}"\nmeasuredboot_ml_path = "{work / "no-boot-log"}"\n'
        f'payload_script = ""\nek_handle = "{ek_handle}"\nrun_as = ""\n',
        encoding="utf-8",
    )
    env = {**env, "KEYLIME_AGENT_CONFIG": str(config)}
    argv = [str(SCRIPTS / "limelet-agent")]
    return AgentSpec("limelet", argv, env, work, port, data / "server-cert.crt")


def keylime66_spec(work: Path, tcti: str, registrar: Registrar, verifier: Verifier) -> AgentSpec:
    """Keylime 6.6.0's agent.conf: the options its agent reads, mTLS on, no payload, no run_as."""
    port = _free_port()
    options = {
        "version": "2.0", "uuid": KEYLIME66_ID, "ip": LOOPBACK, "port": port,
        "contact_ip": LOOPBACK, "contact_port": port, "registrar_ip": LOOPBACK,
        "registrar_port": registrar.port, "enable_agent_mtls": "True", "tls_dir": "default",
        "server_key": "default", "server_key_password": "", "server_cert": "default",
        "trusted_client_ca": f"['{verifier.ca}']", "enc_keyname": "derived_tci_key",
        "dec_payload_file": "decrypted_payload", "secure_size": "1m",
        # A fixed owner password: with "" 6.6.0 sets a random one and cannot start again.
        "tpm_ownerpassword": "limeletbench",
        "extract_payload_zip": "True", "enable_revocation_notifications": "False",
        "revocation_notification_ip": LOOPBACK, "revocation_notification_port": "8992",
        "revocation_cert": "default", "revocation_actions": "[]", "payload_script": "",
        "enable_insecure_payload": "False", "measure_payload_pcr": "-1",
        "exponential_backoff": "True", "max_retries": "4", "retry_interval": "2",
        "tpm_hash_alg": "sha256", "tpm_encryption_alg": "rsa", "tpm_signing_alg": "rsassa",
        "ek_handle": "generate", "run_as": "",
    }  # fmt: skip
    conf = work / "agent.conf"
    conf.write_text("[agent]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()))
    logging_conf = work / "logging.conf"
    logging_conf.write_text(keylime_agent66.LOGGING_CONF)
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "KEYLIME_DIR": str(work),
        "KEYLIME_AGENT_CONFIG": str(conf),
        "KEYLIME_LOGGING_CONFIG": str(logging_conf),
        "TPM2TOOLS_TCTI": tcti,
    }
    argv = [str(keylime_agent66.agent_bin())]
    forget = functools.partial(registrar.forget, KEYLIME66_ID)
    return AgentSpec("keylime-6.6.0", argv, env, work, port, None, forget)


def _client_context(spec: AgentSpec, verifier: Verifier) -> Optional[ssl.SSLContext]:
    if spec.server_cert is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif spec.server_cert.exists():
        context = ssl.create_default_context(cafile=str(spec.server_cert))
    else:
        return None  # not written yet
    context.load_cert_chain(str(verifier.cert), str(verifier.key))
    return context


def serving(spec: AgentSpec, context: Optional[ssl.SSLContext]) -> bool:
    """True once ``GET /version`` answers 200 over mTLS.

    Cheap until the port accepts (a refused TCP connect), so that polling every few
    milliseconds does not take CPU from the agent it is timing on a small machine."""
    if context is None or not _port_open(spec.port):
        return False
    url = f"https://{LOOPBACK}:{spec.port}/version"
    try:
        with urllib.request.urlopen(url, context=context, timeout=PROBE_TIMEOUT_S) as reply:
            return bool(reply.status == 200)
    except (OSError, ssl.SSLError, ValueError):
        return False


@contextlib.contextmanager
def started(spec: AgentSpec, verifier: Verifier, log: Path) -> Iterator[tuple[int, float]]:
    """Run the agent; yields (pid, seconds from spawn to serving); always stops it."""
    if spec.before_start is not None:
        spec.before_start()
    with log.open("wb") as out:
        spawned = time.perf_counter()
        proc = subprocess.Popen(
            spec.argv, env=spec.env, cwd=spec.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            # Built once per start (2-3 ms of CPU each, which the poll would otherwise take
            # from the starting agent every few milliseconds); limelet's pinned certificate
            # exists from its first start on.
            context = _client_context(spec, verifier)
            while not serving(spec, context):
                if proc.poll() is not None or time.perf_counter() - spawned > READY_TIMEOUT_S:
                    raise RuntimeError(f"{spec.name} did not serve:\n{log.read_text()[-3000:]}")
                time.sleep(POLL_INTERVAL_S)
                if context is None:
                    context = _client_context(spec, verifier)
            yield proc.pid, time.perf_counter() - spawned
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _unmount_secure(spec.cwd / "secure")


def _unmount_secure(path: Path) -> None:
    # Keylime 6.6.0 mounts a tmpfs at KEYLIME_DIR/secure as root and leaves it mounted.
    for _ in range(3):
        if mount_fs_type(path, MOUNTINFO_PATH.read_text()) is None:
            return
        subprocess.run(["umount", str(path)], check=False, capture_output=True)


def curl_quote(spec: AgentSpec, verifier: Verifier) -> tuple[float, float]:
    """(total, after-handshake) seconds of one quotes/integrity request, as curl times it."""
    nonce = secrets.token_hex(10)  # alphanumeric, as 6.6.0 requires
    query = f"nonce={nonce}&mask={QUOTE_MASK}&partial=1"
    return curl_get(spec, verifier, f"/{API}/quotes/integrity?{query}")


def curl_get(spec: AgentSpec, verifier: Verifier, path: str) -> tuple[float, float]:
    """(total, after-handshake) seconds of one GET over mTLS, as curl times it."""
    trust = ["--cacert", str(spec.server_cert)] if spec.server_cert else ["--insecure"]
    return _curl(f"https://{LOOPBACK}:{spec.port}{path}", trust, verifier)


def curl_url(url: str, server_cert: Path, verifier: Verifier) -> tuple[float, float]:
    """(total, after-handshake) seconds of one GET of ``url`` over mTLS, as curl times it."""
    return _curl(url, ["--cacert", str(server_cert)], verifier)


def _curl(url: str, trust: list[str], verifier: Verifier) -> tuple[float, float]:
    proc = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--max-time", str(CURL_TIMEOUT_S),
         *trust, "--cert", str(verifier.cert), "--key", str(verifier.key),
         "--output", "/dev/null", "--write-out", CURL_TIMES, url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    appconnect, starttransfer, total = (float(field) for field in proc.stdout.split())
    return total, starttransfer - appconnect


# What the agent imports before any of its own code runs: its libraries, nothing else.
LIBRARY_FLOOR_IMPORTS = (
    "import ssl, trio, h11, tpm2_pytss\n"
    "from tpm2_pytss import ESAPI\n"
    "from cryptography import x509\n"
    "from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa\n"
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
)


def library_floor_mb() -> float:
    """Peak RSS of a python that imports the agent's libraries (trio, h11, tpm2-pytss,
    cryptography, ssl) and stops: what no agent built on them can go below."""
    code = LIBRARY_FLOOR_IMPORTS + (
        "import os\nfrom tools.procfs import peak_rss_mb\nprint(peak_rss_mb(os.getpid()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout)


@contextlib.contextmanager
def openssl_server(cert: Path, key: Path, client_ca: Path) -> Iterator[int]:
    """``openssl s_server`` with the agent's own certificate and key, requiring a client
    certificate from ``client_ca``: the fastest TLS server curl can be timed against here."""
    port = _free_port()
    argv = [
        "openssl", "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(cert),
        "-key", str(key), "-Verify", "1", "-CAfile", str(client_ca), "-www", "-quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"openssl s_server did not start (exit {proc.poll()})")
            time.sleep(POLL_INTERVAL_S)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0
