"""Register a software identity at a real registrar (Keylime's or ours) as an agent would.

The credential blob is opened with the software EK (tests/interop/test_keylime_fixture.py
``activate_credential``), so no registrar-side secret is read: this works against real
Keylime, whose database the test does not touch.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from attest_protocol.bootstrap_keys import hmac_sha384_hex
from attest_protocol.tpm2.public import parse_tpm2b_public
from tests.interop.test_keylime_fixture import activate_credential
from tests.registrar.support import SoftwareIdentity

TIMEOUT_SECONDS = 30.0


def register_software_agent(
    url: str, agent_id: str, identity: SoftwareIdentity, api: str = "v2.5"
) -> dict[str, Any]:
    """``POST /{api}/agents/{id}`` then ``PUT .../activate``, as rust-keylime's push agent does
    (PROTOCOL.md section 1); returns the body it registered."""
    body = identity.body()
    with httpx.Client(base_url=url, timeout=TIMEOUT_SECONDS, trust_env=False) as client:
        created = client.post(f"/{api}/agents/{agent_id}", json=body)
        assert created.status_code == 200, created.text
        blob = base64.b64decode(created.json()["results"]["blob"])
        name = parse_tpm2b_public(identity.aik_tpm).name()
        challenge = activate_credential(blob, identity.ek_key, name)
        key = base64.b64encode(challenge)
        tag = hmac_sha384_hex(key, agent_id)
        activated = client.put(f"/{api}/agents/{agent_id}/activate", json={"auth_tag": tag})
        assert activated.status_code == 200, activated.text
    return body
