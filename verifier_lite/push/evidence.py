"""The evidence PATCH, checked for shape before anything is judged.

Keylime 7.14.3 keylime/web/verifier/attestation_controller.py ``update`` and
keylime/verification/tpm_engine.py ``process_evidence``: the items must come in the order and
number of ``evidence_requested``, each of the requested type; a quote's ``message``,
``signature`` and ``subject_data`` are base64; an IMA log carries ``entries`` text and an
``entry_count``.  What passes is turned into the pull-mode ``Evidence`` of checks.py: the
quote string ``r<message>:<signature>:<subject_data>`` is exactly what a pull agent sends
(TPMS_ATTEST, TPMT_SIGNATURE, the tpm2-tools PCR blob), so push and pull are judged by the
same ``check_evidence``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from attest_protocol.errors import AttestProtocolError
from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.attest import parse_tpms_attest
from verifier_lite.checks import Evidence
from verifier_lite.push.errors import PushError, bad_request

MAX_IMA_TEXT = 64 * 1024 * 1024  # bounded anyway by max_body_bytes


def _b64_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"tpm_quote data.{name} is required")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"tpm_quote data.{name} is not base64") from None
    return value


def _items(
    attributes: Mapping[str, Any], requested: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    collected = attributes.get("evidence_collected")
    if not isinstance(collected, list):
        raise bad_request("evidence_collected must be a list")
    if len(collected) != len(requested):
        raise bad_request("evidence_collected must contain as many items as were requested")
    for got, want in zip(collected, requested):
        if not isinstance(got, dict) or not isinstance(got.get("data"), dict):
            raise bad_request("each evidence item needs a data object")
        if got.get("evidence_type") != want["evidence_type"]:
            raise bad_request(f"expected {want['evidence_type']} evidence in this position")
    return collected


def to_evidence(
    attributes: Mapping[str, Any],
    requested: Sequence[Mapping[str, Any]],
    *,
    enc_alg: str,
    boottime: int,
) -> tuple[Evidence, int]:
    """The pull-mode Evidence and the number of IMA lines sent; PushError (400) if misshaped."""
    quote: Optional[str] = None
    hash_alg = sign_alg = ""
    ima_text: Optional[str] = None
    ima_count = 0
    start = 0
    uefi: Optional[str] = None
    for got, want in zip(_items(attributes, requested), requested):
        data, chosen = got["data"], want["chosen_parameters"]
        if want["evidence_type"] == "tpm_quote":
            parts = [_b64_field(data, n) for n in ("message", "signature", "subject_data")]
            quote = "r" + ":".join(parts)
            hash_alg, sign_alg = chosen["hash_algorithm"], chosen["signature_scheme"]
        elif want["evidence_type"] == "ima_log":
            ima_text, ima_count = _ima(data)
            start = chosen["starting_offset"]
        elif want["evidence_type"] == "uefi_log":
            uefi = data.get("entries") if isinstance(data.get("entries"), str) else None
            if uefi is None:
                raise bad_request("uefi_log data.entries is required")
    if quote is None:
        raise bad_request("no tpm_quote was requested")
    evidence = Evidence(
        quote=quote,
        hash_alg=hash_alg,
        enc_alg=enc_alg,
        sign_alg=sign_alg,
        pubkey=None,
        boottime=boottime,
        ima_measurement_list=ima_text,
        ima_measurement_list_entry=start,
        mb_measurement_list=uefi,
    )
    return evidence, ima_count


def _ima(data: Mapping[str, Any]) -> tuple[str, int]:
    entries, count = data.get("entries"), data.get("entry_count")
    if not isinstance(entries, str) or len(entries) > MAX_IMA_TEXT:
        raise bad_request("ima_log data.entries must be text")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise bad_request("ima_log data.entry_count must be a count")
    lines = [line for line in entries.split("\n") if line]
    if len(lines) != count:
        raise bad_request("ima_log data.entry_count does not match its entries")
    text = "\n".join(lines) + ("\n" if lines else "")
    return text, count


def check_challenge(quote: str, challenge: bytes) -> None:
    """Refuse, before anything is stored, a quote that does not parse or was made for another
    challenge (an old quote replayed into this attestation).  Keylime accepts it with 202 and
    fails the agent (broken_evidence_chain); refusing keeps a replay from touching the
    record, and an agent that never sends fresh evidence still times out (monitor.py)."""
    try:
        attest = parse_tpms_attest(KeylimeQuote.parse(quote).attest)
    except AttestProtocolError as exc:
        raise bad_request(f"tpm_quote does not parse: {str(exc)[:120]}") from None
    if not hmac.compare_digest(attest.extra_data, challenge):
        raise PushError(400, "challenge_mismatch", "the quote is not over this challenge")
