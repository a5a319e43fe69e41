"""Keylime 7.14.3 makes the payload and signs the revocation; our agent libraries consume them.

Inside Keylime's own interpreter: its CA (keylime/ca_util.py) makes the agent's and the
RevocationNotifier's certificate packages, the RevocationNotifier certificate and extra files
are added to the agent's package as ``keylime_tenant --cert ... --include`` adds them, the
zip is encrypted with the tenant's ``user_data_encrypt.encrypt`` (K, U, V), and the verifier's
``cloud_verifier_common.prepare_error`` signs a revocation with the RevocationNotifier key;
``keylime.json.dumps`` makes the body as ``tornado_requests`` posts it.  Then our side
decrypts, deploys, runs autorun.sh, verifies the notification and runs the payload's action.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.payload import decrypt_payload, deploy_payload, run_payload_script
from edge_agent.revocation import (
    RevocationOptions,
    RevocationSignatureError,
    handle_notification,
)
from tests.fixtures.keylime import run_in_keylime

pytestmark = pytest.mark.interop

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"

# Keylime's [ca] options (its ca.conf defaults), given as KEYLIME_CA_* since the snippet's
# KEYLIME_DIR is empty.
CA_ENV = {
    "KEYLIME_CA_CERT_BITS": "2048",
    "KEYLIME_CA_CERT_COUNTRY": "US",
    "KEYLIME_CA_CERT_STATE": "MA",
    "KEYLIME_CA_CERT_LOCALITY": "Lexington",
    "KEYLIME_CA_CERT_ORGANIZATION": "MITLL",
    "KEYLIME_CA_CERT_ORG_UNIT": "53",
    "KEYLIME_CA_CERT_CA_NAME": "Keylime Certificate Authority",
    "KEYLIME_CA_CERT_CA_LIFETIME": "3650",
    "KEYLIME_CA_CERT_LIFETIME": "365",
    "KEYLIME_CA_CERT_CRL_DIST": "http://localhost:38080/crl",
}

SNIPPET = """
import base64, io, os, zipfile
from keylime import ca_util, cloud_verifier_common, json
from keylime.cmd import user_data_encrypt

ca_dir = os.path.join(os.getcwd(), "ca")
ca_util.read_password("limelet-test")
ca_util.cmd_init(ca_dir)
ca_util.cmd_mkcert(ca_dir, payload["agent_id"])
agent_pkg, _, _ = ca_util.cmd_certpkg(ca_dir, payload["agent_id"])
ca_util.cmd_mkcert(ca_dir, "RevocationNotifier")
rev_pkg, _, _ = ca_util.cmd_certpkg(ca_dir, "RevocationNotifier")
with zipfile.ZipFile(io.BytesIO(rev_pkg)) as zf:
    rev_key = zf.read("RevocationNotifier-private.pem")
    rev_cert = zf.read("RevocationNotifier-cert.crt")
buf = io.BytesIO(agent_pkg)
with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as zf:
    zf.writestr("RevocationNotifier-cert.crt", rev_cert)
    for name, data in payload["include"].items():
        zf.writestr(name, data)
sealed = user_data_encrypt.encrypt(buf.getvalue())
agent = dict(payload["agent"], revocation_key=rev_key.decode())
result = {
    "k": base64.b64encode(sealed["k"]).decode(),
    "ciphertext": sealed["ciphertext"].decode(),
    "body": json.dumps(cloud_verifier_common.prepare_error(agent)),
}
"""

AUTORUN = '#!/bin/sh\necho "autorun ran" > ../autorun-marker\n'
ACTION = '#!/bin/sh\ncp "$1" action-saw.json\n'  # cwd: the secure dir


@pytest.fixture(scope="module")
def from_keylime(keylime_venv: Path) -> dict[str, Any]:
    payload = {
        "agent_id": AGENT_ID,
        "include": {
            "autorun.sh": AUTORUN,
            "local_action_mark": ACTION,
            "action_list": "local_action_mark\n",
        },
        "agent": {
            "ip": "127.0.0.1",
            "agent_id": AGENT_ID,
            "port": 9002,
            "tpm_policy": '{"mask": "0x400"}',
            "meta_data": '{"cert_serial": 2}',
        },
    }
    return run_in_keylime(SNIPPET, payload, env=CA_ENV)


async def test_keylime_payload_and_revocation_end_to_end(
    from_keylime: dict[str, Any], tmp_path: Path
) -> None:
    secure = tmp_path / "secure"
    secure.mkdir(mode=0o700)
    k = base64.b64decode(from_keylime["k"])
    plain = decrypt_payload(k, base64.b64decode(from_keylime["ciphertext"]))
    deployed = await deploy_payload(
        secure,
        plain,
        k,
        dec_payload_file="decrypted_payload",
        enc_keyname="derived_tci_key",
        extract_zip=True,
    )
    assert deployed.unzipped is not None
    names = sorted(p.name for p in deployed.unzipped.iterdir())
    assert "RevocationNotifier-cert.crt" in names
    assert f"{AGENT_ID}-cert.crt" in names and "cacert.crt" in names
    assert (deployed.unzipped / "derived_tci_key").read_bytes() == k

    status = await run_payload_script(deployed.unzipped, "autorun.sh", allowed=True)
    assert status == 0
    assert (secure / "autorun-marker").read_text() == "autorun ran\n"

    options = RevocationOptions(
        revocation_cert="default",
        revocation_actions="",
        revocation_actions_dir=tmp_path / "no-installed-actions",
        allow_payload_revocation_actions=True,
    )
    body = from_keylime["body"].encode()
    forged = json.loads(body)
    forged["msg"] = forged["msg"].replace("0x400", "0x401")
    with pytest.raises(RevocationSignatureError):
        await handle_notification(json.dumps(forged).encode(), secure, options)
    assert not (secure / "action-saw.json").exists()

    message, results = await handle_notification(body, secure, options)
    assert message.agent_id == AGENT_ID and message.type == "revocation"
    assert [(r.name, r.status) for r in results] == [("local_action_mark", 0)]
    saw = json.loads((secure / "action-saw.json").read_text())
    assert saw["agent_id"] == AGENT_ID and saw["tpm_policy"] == '{"mask": "0x400"}'
