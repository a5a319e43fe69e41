"""``/keys/pubkey``, ``/keys/ukey``, ``/keys/vkey`` and ``/keys/verify``.

Bodies as rust-keylime keylime-agent/src/keys_handler.rs reads them: ukey
``{"auth_tag": hex, "encrypted_key": b64, "payload": b64 (optional)}``, vkey
``{"encrypted_key": b64}``; verify answers ``{"hmac": hex}``.  The key exchange itself is
edge_agent.bootstrap_keys; once it yields K, the payload hook runs in the background.
"""

from __future__ import annotations

import binascii
import logging
import re
from typing import Any

from attest_protocol.api_version import ApiVersion
from edge_agent.bootstrap_keys import (
    AUTH_TAG_BYTES,
    BootstrapKeyError,
    DerivedKey,
    UHalf,
    VHalf,
    decrypt_half,
)
from edge_agent.server.context import AgentApiContext
from edge_agent.server.errors import BadRequest
from edge_agent.server.request import (
    Request,
    b64_field,
    json_object,
    optional_str,
    required_str,
)

__all__ = ["MAX_CHALLENGE_CHARS", "pubkey", "ukey", "verify", "vkey"]

log = logging.getLogger(__name__)

# Keylime's tenant sends a 20-character challenge (tenant.py do_verify, random_password(20));
# the limit keeps the HMAC input small.
MAX_CHALLENGE_CHARS = 256
_CHALLENGE_RE = re.compile(f"[A-Za-z0-9]{{1,{MAX_CHALLENGE_CHARS}}}")


async def pubkey(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    return {"pubkey": ctx.nk_public_pem.decode("ascii")}


def _half(ctx: AgentApiContext, body: dict[str, Any]) -> bytes:
    encrypted = b64_field(required_str(body, "encrypted_key"), "encrypted_key")
    try:
        return decrypt_half(ctx.nk, encrypted)
    except BootstrapKeyError as exc:
        raise BadRequest(f"Failed to decrypt encrypted_key: {exc}") from exc


def _auth_tag(body: dict[str, Any]) -> bytes:
    text = required_str(body, "auth_tag")
    try:
        tag = binascii.unhexlify(text)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("Invalid hex encoding in auth_tag") from exc
    if len(tag) != AUTH_TAG_BYTES:
        raise BadRequest(f"auth_tag is not {AUTH_TAG_BYTES} bytes")
    return tag


async def ukey(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    body = json_object(request.body)
    auth_tag = _auth_tag(body)
    payload_text = optional_str(body, "payload")
    payload = None if payload_text is None else b64_field(payload_text, "payload")
    half = UHalf(_half(ctx, body), auth_tag, payload)
    try:
        derived = ctx.keys.add_u(half)
    except BootstrapKeyError as exc:
        raise BadRequest(str(exc)) from exc
    _deploy(ctx, derived)
    return {}


async def vkey(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    body = json_object(request.body)
    derived = ctx.keys.add_v(VHalf(_half(ctx, body)))
    _deploy(ctx, derived)
    return {}


def _deploy(ctx: AgentApiContext, derived: DerivedKey | None) -> None:
    if derived is not None:
        ctx.spawn(ctx.deploy_payload, derived)


async def verify(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    challenge = request.query.get("challenge", "")
    if not challenge:
        raise BadRequest("No challenge provided.")
    if not _CHALLENGE_RE.fullmatch(challenge):
        raise BadRequest("Parameters should be strictly alphanumeric")
    try:
        return {"hmac": ctx.keys.challenge_hmac(challenge.encode("ascii"))}
    except BootstrapKeyError as exc:
        raise BadRequest(str(exc)) from exc
