"""The real keylime_tenant's ``--cert`` package and the real verifier's revocation notice.

A private Keylime 7.14.3 verifier and registrar (quote interval 1 s, revocation notifications
``['agent']``, tools/keylime_config.py) and our agent on swtpm, as in
test_keylime_verifier_attests_agent.py.  ``keylime_tenant -c add --cert DIR --include DIR2
--verify`` makes a CA in DIR (keylime/ca_util.py, password from ca.conf), zips the agent's
certificate package, ``RevocationNotifier-cert.crt`` and the files of DIR2, encrypts it with
K, and gives the verifier the RevocationNotifier private key (keylime/tenant.py ``init_add``).

1. The package: ``--verify`` passes, the zip is unpacked into ``<keylime_dir>/secure/unzipped``
   and its ``autorun.sh`` (from DIR2) ran there and left a marker.
2. Revocation: PCR 17 is in the TPM policy; ``swtpm_ioctl -h`` changes it from outside, the
   verifier fails the agent and posts the signed notice to every agent it holds, this one
   included (cloud_verifier_tornado.py ``notify_error``); the configured ``write_marker`` and
   the payload's listed action both get Keylime's message.  Before that, a notice signed with
   another key is answered 400 and runs nothing.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from edge_agent.app import AgentStarted, run_agent
from edge_agent.config import AgentConfig
from tests.interop.agent_support import (
    HCRTM_PCR,
    LOOPBACK,
    agent_config,
    agent_tls_context,
    hcrtm_tamper,
    request_json,
    tenant,
    unmounted_at_exit,
    verifier_log,
    wait_for_file,
)
from tools.keylime_services import KeylimeServices, start_keylime
from tools.swtpm import Swtpm

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

QUOTE_INTERVAL_SECONDS = 1
AGENT_ID = "limelet-cert-package"
SECURE_DIR = "secure"
UNZIPPED = "unzipped"
REVOCATION_CERT = "RevocationNotifier-cert.crt"
AUTORUN = "autorun.sh"
AUTORUN_MARKER = "autorun-marker"
# autorun.sh runs in secure/unzipped with AGENT_UUID set (docs/payloads-and-revocation.md).
AUTORUN_SCRIPT = f'#!/bin/sh\nprintf "%s ran in %s\\n" "$AGENT_UUID" "$PWD" > ../{AUTORUN_MARKER}\n'
# The agent deploys the payload just after the tenant's --verify saw K.
DEPLOY_TIMEOUT_SECONDS = 10.0
# keylime/tenant.py do_verify logs this once the agent's HMAC of the challenge matches.
VERIFIED_LOG = "Successful key derivation for"

# An action gets the signed msg's file as its one argument; each appends it as one line.
LOCAL_ACTION = "write_marker"
PAYLOAD_ACTION = "payload_marker"
ACTION_SCRIPT = '#!/bin/sh\n{{ cat "$1"; echo; }} >> "{marker}"\n'
# swtpm starts with PCR 17 all ff: no H-CRTM event happened.
TPM_POLICY = {str(HCRTM_PCR): ["f" * 64]}
# Failing a quote, posting the notices and running the actions: a few quote intervals.
REVOKED_TIMEOUT_SECONDS = 15.0
# After the forged notice's 400, time enough for an action that should not run to show up.
FORGED_GRACE_SECONDS = 1.0
FORGED_AGENT_ID = "forged-notice"
# The forger's key is the size of the RevocationNotifier's (ca.conf cert_bits).
FORGED_KEY_BITS = 2048
RSA_EXPONENT = 65537


@pytest.fixture
def keylime(tmp_path: Path) -> Iterator[KeylimeServices]:
    with start_keylime(tmp_path / "keylime", quote_interval_seconds=QUOTE_INTERVAL_SECONDS) as svc:
        yield svc


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Path]:
    """The agent's secure dir; as root the agent mounts a tmpfs there, unmounted at the end."""
    yield from unmounted_at_exit(tmp_path / "agent" / SECURE_DIR)


def include_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "include"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


async def add_with_cert(
    keylime: KeylimeServices, config: AgentConfig, ca_dir: Path, incl: Path
) -> None:
    """``keylime_tenant -c add --cert ca_dir --include incl --verify``; it must succeed."""
    added = await tenant(
        keylime,
        *("-c", "add", "-t", LOOPBACK, "-tp", str(config.port), "-u", config.uuid),
        *("--tpm_policy", json.dumps(TPM_POLICY)),
        *("--cert", str(ca_dir), "--include", str(incl), "--verify"),
    )
    output = added.stdout + added.stderr
    assert added.returncode == 0, output + verifier_log(keylime)
    assert f"{VERIFIED_LOG} Agent {config.uuid} (" in output, output


async def test_tenant_cert_package_is_deployed_and_autorun_runs(
    swtpm: Swtpm,
    keylime: KeylimeServices,
    tmp_path: Path,
    secure: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TCTI", raising=False)
    config = agent_config(
        tmp_path, swtpm.tcti, keylime, AGENT_ID, extract_payload_zip=True, payload_script=AUTORUN
    )
    ca_dir = tmp_path / "tenant-ca"
    incl = include_dir(tmp_path, {AUTORUN: AUTORUN_SCRIPT})
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        started: AgentStarted = await nursery.start(
            lambda task_status: run_agent(config, task_status=task_status)
        )
        assert started.agent_id == AGENT_ID
        await add_with_cert(keylime, config, ca_dir, incl)
        enrolled = time.monotonic() - start
        found = await wait_for_file(secure / AUTORUN_MARKER, DEPLOY_TIMEOUT_SECONDS)
        ran = time.monotonic() - start
        nursery.cancel_scope.cancel()
    assert found, "autorun.sh left no marker"
    print(f"enrolled with --cert in {enrolled:.1f} s, autorun.sh ran after {ran:.1f} s")
    check_deployed_package(secure, ca_dir)


def check_deployed_package(secure: Path, ca_dir: Path) -> None:
    # As root the payload lives on the agent's tmpfs, never on disk.
    assert os.path.ismount(secure) == (os.geteuid() == 0)
    unzipped = secure / UNZIPPED
    assert (secure / AUTORUN_MARKER).read_text() == f"{AGENT_ID} ran in {unzipped}\n"
    assert (unzipped / AUTORUN).read_text() == AUTORUN_SCRIPT
    # The package as keylime/ca_util.py cmd_certpkg made it, plus the revoker's certificate.
    for name in (f"{AGENT_ID}-cert.crt", f"{AGENT_ID}-private.pem", "cacert.crt", REVOCATION_CERT):
        assert (unzipped / name).read_bytes() == (ca_dir / name).read_bytes(), name


def forged_notice(agent_id: str) -> dict[str, str]:
    """Keylime's notice format and signature scheme, signed with a key nobody trusts."""
    msg = json.dumps({"type": "revocation", "agent_id": agent_id, "event_time": time.asctime()})
    key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=FORGED_KEY_BITS)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    signature = key.sign(msg.encode(), pss, hashes.SHA256())
    return {"msg": msg, "signature": base64.b64encode(signature).decode()}


def received(marker: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in marker.read_text().splitlines() if line]


async def test_verifier_revocation_notice_runs_actions_and_forgery_runs_none(
    swtpm: Swtpm,
    keylime: KeylimeServices,
    tmp_path: Path,
    secure: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TCTI", raising=False)
    local_marker = tmp_path / "local-action.jsonl"
    payload_marker = tmp_path / "payload-action.jsonl"
    actions_dir = tmp_path / "actions"
    actions_dir.mkdir()
    (actions_dir / LOCAL_ACTION).write_text(ACTION_SCRIPT.format(marker=local_marker))
    (actions_dir / LOCAL_ACTION).chmod(0o700)
    incl = include_dir(
        tmp_path,
        {
            PAYLOAD_ACTION: ACTION_SCRIPT.format(marker=payload_marker),
            "action_list": f"{PAYLOAD_ACTION}\n",
        },
    )
    config = agent_config(
        tmp_path,
        swtpm.tcti,
        keylime,
        AGENT_ID,
        extract_payload_zip=True,
        payload_script="",
        revocation_actions=LOCAL_ACTION,
        revocation_actions_dir=str(actions_dir),
        allow_payload_revocation_actions=True,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: run_agent(config, task_status=task_status))
        await add_with_cert(keylime, config, tmp_path / "tenant-ca", incl)
        assert await wait_for_file(secure / UNZIPPED / REVOCATION_CERT, DEPLOY_TIMEOUT_SECONDS)

        ctx = agent_tls_context(keylime, config.server_cert_path)
        status, answer = await request_json(config.port, ctx, "/version", method="GET")
        assert status == 200, answer
        path = f"/v{answer['results']['supported_version']}/notifications/revocation"
        status, answer = await request_json(config.port, ctx, path, forged_notice(FORGED_AGENT_ID))
        assert (status, answer["code"]) == (400, 400), answer
        assert answer["status"] == "Revocation notification refused: signature does not verify"
        await trio.sleep(FORGED_GRACE_SECONDS)
        assert not local_marker.exists() and not payload_marker.exists()

        await hcrtm_tamper(swtpm, b"limelet: tampered")
        tampered_at = time.monotonic()
        assert await wait_for_file(local_marker, REVOKED_TIMEOUT_SECONDS), verifier_log(keylime)
        assert await wait_for_file(payload_marker, REVOKED_TIMEOUT_SECONDS), verifier_log(keylime)
        acted_after = time.monotonic() - tampered_at
        nursery.cancel_scope.cancel()

    local, from_payload = received(local_marker), received(payload_marker)
    print(f"actions ran {acted_after:.1f} s after PCR {HCRTM_PCR} changed: {local[0]}")
    assert local and local == from_payload
    # Keylime's message (cloud_verifier_common.prepare_error), never the forged one.
    for message in local:
        assert message["type"] == "revocation", message
        assert message["agent_id"] == AGENT_ID, message
        assert (message["ip"], message["port"]) == (LOOPBACK, config.port), message
        assert message["event_id"] == f"pcr_validation.invalid_pcr_{HCRTM_PCR}", message
        assert json.loads(message["tpm_policy"])[str(HCRTM_PCR)] == TPM_POLICY[str(HCRTM_PCR)]
