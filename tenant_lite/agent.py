"""The three agent calls ``add`` makes, over mTLS with the agent's registered certificate pinned.

Paths and fields from keylime/tenant.py ``do_quote`` and ``do_verify`` (REST API 2.x):
``GET quotes/identity?nonce=`` -> ``quote, hash_alg, enc_alg, sign_alg, pubkey``;
``POST keys/ukey`` with ``encrypted_key, auth_tag[, payload]``;
``GET keys/verify?challenge=`` -> ``hmac``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any, Optional

from tenant_lite.config import TenantConfig
from tenant_lite.errors import AttestationError
from tenant_lite.http import ServiceClient, agent_ssl_context

# keylime/tpm/tpm_util.py random_password(20): nonces and challenges are 20 alphanumerics.
NONCE_CHARS = 20
_ALPHABET = string.ascii_letters + string.digits


def random_text(length: int = NONCE_CHARS) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def agent_client(
    config: TenantConfig, agent_id: str, ip: str, port: int, mtls_cert: Optional[str]
) -> ServiceClient:
    """A client that trusts only ``mtls_cert``; an agent without one is refused."""
    if not mtls_cert or mtls_cert == "disabled":
        raise AttestationError(
            "agent-mtls",
            f"agent {agent_id} registered no mTLS certificate; limelet-tenant talks to agents "
            "only over mTLS (enable it in the agent's config and re-register)",
        )
    ctx = agent_ssl_context(config, mtls_cert)
    trust = f"the mTLS certificate agent {agent_id} registered"
    url = f"https://{ip}:{port}"
    return ServiceClient(f"agent {agent_id}", url, ctx, trust, config.request_timeout)


def identity_quote(client: ServiceClient, agent_id: str, nonce: str) -> Mapping[str, Any]:
    env = client.checked(
        "GET", "/quotes/identity", f"agent {agent_id}'s identity quote", params={"nonce": nonce}
    )
    return env.results


def send_ukey(client: ServiceClient, agent_id: str, body: Mapping[str, Any]) -> None:
    client.checked("POST", "/keys/ukey", f"agent {agent_id}'s keys/ukey", body=body)


def derived_key_hmac(client: ServiceClient, challenge: str) -> Optional[str]:
    """The agent's HMAC for ``challenge``, or None while it has not derived K yet."""
    env = client.call("GET", "/keys/verify", params={"challenge": challenge})
    mac = env.results.get("hmac")
    return mac if env.ok and isinstance(mac, str) else None
