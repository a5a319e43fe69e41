"""``GET /quotes/identity`` and ``GET /quotes/integrity``: TPM quotes with PCR 16 bound to the NK.

Fields and checks follow rust-keylime keylime-agent/src/quotes_handler.rs and the KeylimeQuote
struct of keylime/src/quote.rs: ``quote``, ``hash_alg``, ``enc_alg``, ``sign_alg``, then
``pubkey``, ``ima_measurement_list``, ``mb_measurement_list``, ``ima_measurement_list_entry``
only when present.  ``boottime`` is the Python agent's field (keylime/cloud_verifier_common.py
reads it, default 0); the verifier uses it to tell a reboot from a replayed IMA offset.

PCR 16 is reset and extended with H(NK public PEM) before every quote and always quoted, in
one TPM-layer operation (``Tpm.bound_quote``; rust-keylime tpm.rs ``build_pcr_list``): the
verifier checks it against the ``pubkey`` it was sent or cached, which ties the U/V halves it
encrypts to this TPM.  While the TPM connection is being reopened a quote answers 503.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any, Optional

from attest_protocol.api_version import ApiVersion
from attest_protocol.errors import ParseError
from attest_protocol.keylime_facts import ENC_ALG_ALIASES, IMA_PCR
from attest_protocol.tpm2.pcr import parse_mask
from edge_agent.server.context import AgentApiContext
from edge_agent.server.errors import BadRequest, ServiceUnavailable
from edge_agent.server.request import Request
from edge_agent.tpm import TpmUnavailable
from edge_agent.tpm.protocol import MAX_NONCE_BYTES

__all__ = ["MAX_NONCE_CHARS", "enc_alg_for_version", "identity_quote", "integrity_quote"]

log = logging.getLogger(__name__)

# The nonce is ASCII alphanumerics, one byte each in the TPM's qualifyingData.
MAX_NONCE_CHARS = MAX_NONCE_BYTES
_NONCE_RE = re.compile(f"[A-Za-z0-9]{{1,{MAX_NONCE_CHARS}}}")
BOOT_PCR = 0
# ima_ml_entry is an entry index; 20 digits hold any u64, more is not an index.
MAX_ENTRY_DIGITS = 20
_ENTRY_RE = re.compile(f"[0-9]{{1,{MAX_ENTRY_DIGITS}}}")
# API 2.5 renamed "rsa"/"ecc" to "rsa2048"/"ecc256" (rust-keylime algorithms.rs
# to_string_for_api_version); other key types are spelt the same in every version.
_MODERN_ENC_NAMES = ENC_ALG_ALIASES
_LEGACY_ENC_NAMES = {modern: legacy for legacy, modern in _MODERN_ENC_NAMES.items()}
ENC_ALG_RENAMED_IN = ApiVersion(2, 5)
PROC_STAT = "/proc/stat"


def enc_alg_for_version(enc_alg: str, version: ApiVersion) -> str:
    legacy = _LEGACY_ENC_NAMES.get(enc_alg, enc_alg)
    if version < ENC_ALG_RENAMED_IN:
        return legacy
    return _MODERN_ENC_NAMES.get(legacy, legacy)


def checked_nonce(request: Request) -> bytes:
    nonce = request.query.get("nonce")
    if nonce is None:
        raise BadRequest("Missing query parameter 'nonce'")
    if len(nonce) > MAX_NONCE_CHARS:
        raise BadRequest(f"Nonce is too long (max size: {MAX_NONCE_CHARS}): {len(nonce)}")
    if not _NONCE_RE.fullmatch(nonce):
        raise BadRequest("nonce should be strictly alphanumeric")
    return nonce.encode("ascii")


def _checked_mask(request: Request) -> int:
    text = request.query.get("mask")
    if text is None:
        raise BadRequest("Missing query parameter 'mask'")
    try:
        return parse_mask(text)
    except ParseError as exc:
        raise BadRequest(f"mask should be a hex encoded PCR mask: {exc.reason}") from exc


def _checked_partial(request: Request) -> bool:
    partial = request.query.get("partial")
    if partial not in ("0", "1"):
        raise BadRequest("uri must contain key 'partial' and value '0' or '1'")
    return partial == "1"


def _checked_entry(request: Request) -> int:
    text = request.query.get("ima_ml_entry")
    if text is None:
        return 0
    if not _ENTRY_RE.fullmatch(text):
        raise BadRequest("ima_ml_entry should be a non-negative decimal number")
    return int(text)


async def _quote(
    ctx: AgentApiContext, nonce: bytes, mask: int, version: ApiVersion
) -> dict[str, Any]:
    try:
        quote = await ctx.tpm.bound_quote(ctx.nk_public_pem, nonce, mask, ctx.hash_alg)
    except TpmUnavailable as exc:
        # The backend is reopening the TPM; the verifier's next poll may well succeed.
        raise ServiceUnavailable(f"TPM unavailable, try again later: {exc.reason}") from exc
    results: dict[str, Any] = {
        "quote": quote.encode(),
        "hash_alg": ctx.hash_alg,
        "enc_alg": enc_alg_for_version(ctx.enc_alg, version),
        "sign_alg": ctx.sign_alg,
    }
    return results


async def identity_quote(
    ctx: AgentApiContext, request: Request, version: ApiVersion
) -> dict[str, Any]:
    """The tenant's quote: PCR 16 only, with the NK public key."""
    nonce = checked_nonce(request)
    results = await _quote(ctx, nonce, 0, version)
    results["pubkey"] = ctx.nk_public_pem.decode("ascii")
    boottime = read_boottime()
    if boottime is not None:
        results["boottime"] = boottime
    return results


async def integrity_quote(
    ctx: AgentApiContext, request: Request, version: ApiVersion
) -> dict[str, Any]:
    """The verifier's quote over ``mask`` (plus PCR 16), with the logs its PCRs need."""
    nonce = checked_nonce(request)
    mask = _checked_mask(request)
    partial = _checked_partial(request)
    entry = _checked_entry(request)
    results = await _quote(ctx, nonce, mask, version)
    if not partial:
        results["pubkey"] = ctx.nk_public_pem.decode("ascii")
    if mask & 1 << BOOT_PCR and ctx.boot_log is not None:
        data = await ctx.boot_log.read()
        if data is not None:
            results["mb_measurement_list"] = base64.b64encode(data).decode("ascii")
    if mask & 1 << IMA_PCR and ctx.ima is not None:
        ima = await ctx.ima.read_from(entry)
        results["ima_measurement_list"] = ima.text
        results["ima_measurement_list_entry"] = ima.start
    boottime = read_boottime()
    if boottime is not None:
        results["boottime"] = boottime
    return results


def read_boottime(path: str = PROC_STAT) -> Optional[int]:
    """Seconds since the epoch at boot (``btime`` in /proc/stat, proc(5)); None if unknown.

    Read on the event loop, not in a worker thread: procfs is generated in memory by the
    kernel and never waits on a disk, and a thread hop would cost more than the read (about
    0.3 ms against 0.05 ms, bench/agent_footprint.py).  Read per quote rather than cached,
    since btime moves when the wall clock is stepped (NTP on a device without an RTC).
    """
    try:
        with open(path, encoding="ascii") as stat:
            for line in stat:
                name, _, value = line.partition(" ")
                if name == "btime" and value.strip().isdigit():
                    return int(value)
    except (OSError, UnicodeDecodeError):
        log.debug("Cannot read btime from %s", path)
    return None
