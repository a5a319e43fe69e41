"""Capabilities in, ``evidence_requested`` out: the pure half of ``POST .../attestations``.

Keylime 7.14.3 keylime/verification/tpm_engine.py ``process_capabilities``: the PCRs asked
for are the tpm_policy's, PCR 10 when a runtime policy is set and the measured-boot PCRs when
an mb policy is set; a tpm_quote is asked for with a fresh 128-bit challenge, an ima_log from
the offset after the last passed attestation (0 after a reboot), a uefi_log only with an mb
policy.  The certification key must be the enrolled AK: any other key offered is ignored.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.keylime_facts import IMA_PCR
from verifier_lite.measured_boot import MB_PCRS
from verifier_lite.push.errors import PushError, bad_request
from verifier_lite.tpm_policy import parse_tpm_policy

CHALLENGE_BYTES = 16
_KNOWN_HASHES = ("sha1", "sha256", "sha384", "sha512")
_SCHEMES = ("rsassa", "rsapss", "ecdsa")


@dataclass(frozen=True)
class Wanted:
    """What the enrolled policies make the verifier ask for."""

    pcrs: frozenset[int]
    ima: bool
    uefi: bool


def wanted(tpm_policy_text: str, *, runtime: bool, mb: bool) -> Wanted:
    pcrs = set(parse_tpm_policy(tpm_policy_text))
    if runtime:
        pcrs.add(IMA_PCR)
    if mb:
        pcrs.update(MB_PCRS)
    return Wanted(frozenset(pcrs), runtime, mb)


@dataclass(frozen=True)
class Offer:
    """The agent's ``evidence_supported``, reduced to what the choice needs."""

    items: dict[str, Mapping[str, Any]]  # evidence_type -> the item
    boot_time: str


def parse_offer(attributes: Mapping[str, Any]) -> Offer:
    supported = attributes.get("evidence_supported")
    if not isinstance(supported, list) or not supported:
        raise PushError(422, "invalid_capabilities", "evidence_supported must be a non-empty list")
    items: dict[str, Mapping[str, Any]] = {}
    for item in supported:
        if not isinstance(item, dict) or not isinstance(item.get("evidence_type"), str):
            raise PushError(422, "invalid_capabilities", "each evidence item needs evidence_type")
        if not isinstance(item.get("capabilities", {}), dict):
            raise PushError(422, "invalid_capabilities", "capabilities must be an object")
        items[item["evidence_type"]] = item
    info = attributes.get("system_info")
    boot_time = info.get("boot_time") if isinstance(info, dict) else None
    if not isinstance(boot_time, str) or not 0 < len(boot_time) <= 64:
        raise bad_request("system_info.boot_time is required")
    return Offer(items, boot_time)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _same_key(public: Any, ak_tpm_b64: str) -> bool:
    """``public`` is the enrolled AK: the same TPM2B_PUBLIC, or its TPMT_PUBLIC body."""
    if not isinstance(public, str):
        return False
    try:
        theirs = base64.b64decode(public, validate=True)
        ours = base64.b64decode(ak_tpm_b64)
    except (binascii.Error, ValueError):
        return False
    return theirs in (ours, ours[2:])


def _key_for(caps: Mapping[str, Any], ak_tpm_b64: str) -> Optional[Mapping[str, Any]]:
    """Keylime's _certification_key_choices order: the enrolled AK's public area, else the
    key the agent names ``ak``.  Either way the quote is verified with the enrolled AK."""
    keys = caps.get("certification_keys")
    candidates = [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
    for key in candidates:
        if _same_key(key.get("public"), ak_tpm_b64):
            return key
    return next((k for k in candidates if k.get("server_identifier") == "ak"), None)


def _allowed(
    key: Mapping[str, Any], name: str, preference: Sequence[str], accepted: Sequence[str]
) -> list[str]:
    """What the key offers and the agent's accept_tpm_* lists allow, best first."""
    offered = _strings(key.get(name))
    return [x for x in preference if x in offered and (not accepted or x in accepted)]


def choose_quote(
    item: Mapping[str, Any],
    ak_tpm_b64: str,
    want: Wanted,
    accept_hashes: Sequence[str],
    accept_schemes: Sequence[str],
) -> dict[str, Any]:
    caps = item.get("capabilities", {})
    if caps.get("component_version") != "2.0":
        raise PushError(422, "invalid_capabilities", "tpm_quote component_version must be 2.0")
    key = _key_for(caps, ak_tpm_b64)
    if key is None:
        raise PushError(422, "invalid_capabilities", "no certification key is the enrolled AK")
    hashes = _allowed(key, "allowable_hash_algorithms", _KNOWN_HASHES[::-1], accept_hashes)
    schemes = _allowed(key, "allowable_signature_schemes", _SCHEMES, accept_schemes)
    if not hashes or not schemes:
        raise PushError(422, "invalid_capabilities", "no acceptable hash or signature scheme")
    bank = hashes[0]
    subjects = caps.get("available_subjects")
    available = subjects.get(bank) if isinstance(subjects, dict) else None
    if not isinstance(available, list) or not want.pcrs <= set(available):
        raise PushError(422, "invalid_capabilities", f"bank {bank} lacks the required PCRs")
    return {
        "challenge": base64.b64encode(secrets.token_bytes(CHALLENGE_BYTES)).decode("ascii"),
        "signature_scheme": schemes[0],
        "hash_algorithm": bank,
        "selected_subjects": {bank: sorted(want.pcrs)},
        "certification_key": dict(key),
    }


def choose_ima(item: Mapping[str, Any], offset: int) -> dict[str, Any]:
    caps = item.get("capabilities", {})
    partial = caps.get("supports_partial_access") is True
    if "text/plain" not in _strings(caps.get("formats")) or not partial:
        raise PushError(422, "invalid_capabilities", "ima_log: text/plain with partial access")
    count = caps.get("entry_count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise PushError(422, "invalid_capabilities", "ima_log entry_count must be a count")
    if offset > count:
        offset = 0  # fewer lines than already attested: a new log, so replay it whole
    return {"starting_offset": offset, "format": "text/plain"}
