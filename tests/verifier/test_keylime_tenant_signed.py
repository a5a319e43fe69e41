"""The real Keylime 7.14.3 tenant enrols a swtpm agent with a runtime policy signed by Keylime.

The policy is signed by Keylime's own ``keylime-policy sign runtime`` (a DSSE envelope, ECDSA
backend); the tenant sends it with ``--runtime-policy-sig-key`` (keylime/cli/policies.py puts
the key in ``runtime_policy_key``).  verifier_lite runs with ``require_allow_list_signatures``:
the signed policy is taken and the agent attests; an unsigned one is refused (401, as Keylime's
verifier answers it) and the tenant reports it; one enrolment can carry a signed runtime
policy and a stored measured-boot policy (``-c addmbpolicy``, ``--mb-policy-name``) together.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cv_ca import TlsFiles
from tests.fixtures.keylime import KeylimeServices
from tests.interop import mb_cases
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier, verifier_config
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tests.verifier.test_keylime_tenant import (
    AGENT_ID,
    ok,
    register,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_measured_boot_swtpm import SB_REFSTATE, extend_real_log
from tests.verifier.test_polling_swtpm import wait_status
from tools.keylime_venv import keylime_bin
from tools.swtpm import Swtpm
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

SIGN_TIMEOUT_SECONDS = 120.0


def sign_with_keylime(policy: Path, workdir: Path) -> tuple[Path, Path]:
    """``keylime-policy sign runtime`` with a fresh EC key: (signed policy, public key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = workdir / "policy-key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = workdir / "policy-key.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signed = workdir / "policy.signed.json"
    command = [str(keylime_bin("keylime-policy")), "sign", "runtime", "-r", str(policy)]
    command += ["-k", str(private), "-o", str(signed)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=SIGN_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "payload" in json.loads(signed.read_text())  # a DSSE envelope, not the plain policy
    return signed, public


async def start_verifier(
    nursery: trio.Nursery, tls: TlsFiles, tmp: Path, mb_policy: str = "accept-all"
) -> RunningVerifier:
    config = verifier_config(
        tmp / "verifier",
        tls,
        require_allow_list_signatures=True,
        measured_boot_policy_name=mb_policy,
    )
    bound = await nursery.start(serve_verifier, config)
    return RunningVerifier(config, bound, tls)


def attested(results: dict[str, object]) -> bool:
    count = results["attestation_count"]
    return results["operational_state"] == State.INVALID_QUOTE or (
        isinstance(count, int) and count >= 2
    )


@pytest.mark.parametrize("with_mb", [False, True], ids=["runtime", "runtime+measured-boot"])
async def test_keylime_tenant_enrols_with_a_policy_signed_by_keylime(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, keylime_services: KeylimeServices,
    tmp_path: Path, with_mb: bool,
) -> None:  # fmt: skip
    log = tmp_path / "ascii_runtime_measurements"
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    mb_log = mb_cases.SB_LOG.read_bytes() if with_mb else None
    if mb_log is not None:
        await trio.to_thread.run_sync(extend_real_log, swtpm.tcti, mb_log)
    plain = tmp_path / "policy.json"
    plain.write_text(policy_for(FILES))
    signed, public = await trio.to_thread.run_sync(sign_with_keylime, plain, tmp_path)
    verifier = await start_verifier(
        nursery, tls_files, tmp_path, "example" if with_mb else "accept-all"
    )
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    async with open_fake_agent(
        nursery, swtpm, verifier.tls, tmp_path, ima_log=log, mb_log=mb_log
    ) as agent:
        await register(agent, registrar)
        conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf")
        tenant = tenant_runner(keylime_services, conf)
        add = ["-c", "add", "-u", AGENT_ID, "--runtime-policy", str(signed)]
        add += ["--runtime-policy-sig-key", str(public)]
        if with_mb:
            ok(await tenant("-c", "addmbpolicy", "--mb-policy-name", "vm1",
                            "--mb-policy", str(SB_REFSTATE)))  # fmt: skip
            add += ["--mb-policy-name", "vm1"]
        ok(await tenant(*add))
        status = await wait_status(verifier, AGENT_ID, attested)
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_runtime_policy"] == 1
    assert status["has_mb_refstate"] == (1 if with_mb else 0)
    assert agent.state.integrity_requests[1]["ima_ml_entry"] == str(len(FILES))


async def test_an_unsigned_policy_is_refused_when_signatures_are_required(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:  # fmt: skip
    verifier = await start_verifier(nursery, tls_files, tmp_path)
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    plain = tmp_path / "policy.json"
    plain.write_text(policy_for(FILES))
    async with open_fake_agent(nursery, swtpm, verifier.tls, tmp_path) as agent:
        await register(agent, registrar)
        conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf")
        tenant = tenant_runner(keylime_services, conf)
        result = await tenant("-c", "add", "-u", AGENT_ID, "--runtime-policy", str(plain))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    # Keylime's own verifier answers this case 401 (ima.verify_runtime_policy); so does ours.
    assert "Response code 401" in output, output[-4000:]
    assert "signature verification required" in output, output[-4000:]
    async with verifier.client() as client:
        missing = await client.get(f"/{API}/agents/{AGENT_ID}")
    assert missing.status_code == 404  # nothing was stored for the refused enrolment
