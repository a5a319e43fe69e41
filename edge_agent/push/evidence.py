"""The attestation documents: capabilities offered, evidence requested, evidence collected.

Pure builders and parsers of the bodies of ``POST`` and ``PATCH
/v3.0/agents/{id}/attestations`` (rust-keylime keylime-push-model-agent/src/struct_filler.rs;
Keylime keylime/verification/tpm_engine.py ``process_capabilities`` and
``process_evidence``).  The evidence goes in the order and number the verifier requested, or
the verifier refuses it (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.pcr import PCR_COUNT
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.ima import ImaSlice
from edge_agent.push.errors import BadVerifierResponse
from edge_agent.push.jsonapi import attributes, b64, b64decode, document, field
from edge_agent.tpm import AkInfo

__all__ = [
    "ImaRequest",
    "Offer",
    "QuoteRequest",
    "Requested",
    "UefiRequest",
    "capabilities_request",
    "error_request",
    "evidence_request",
    "ima_evidence",
    "parse_requested",
    "quote_evidence",
    "uefi_evidence",
]

# TPM 2.0 (the only component_version Keylime accepts: tpm_engine.py).
COMPONENT_VERSION = "2.0"
IMA_FORMAT = "text/plain"
UEFI_FORMAT = "application/octet-stream"


@dataclass(frozen=True)
class Offer:
    """What the agent can give this time."""

    ak: AkInfo
    server_identifier: str
    boot_time: str
    ima_entries: Optional[int]  # None: no IMA log on this machine
    uefi_entries: Optional[int]  # None: no boot log
    uefi_version: str


@dataclass(frozen=True)
class QuoteRequest:
    challenge: bytes
    signature_scheme: str
    hash_algorithm: str
    pcrs: tuple[int, ...]


@dataclass(frozen=True)
class ImaRequest:
    starting_offset: int
    entry_count: Optional[int]


@dataclass(frozen=True)
class UefiRequest:
    pass


Requested = Union[QuoteRequest, ImaRequest, UefiRequest]


def _certification_key(offer: Offer) -> dict[str, Any]:
    public = parse_tpm2b_public(offer.ak.public)
    key = public.public_key()
    return {
        "key_class": "asymmetric",
        "key_algorithm": "rsa" if public.is_rsa else "ecc",
        "key_size": key.key_size,
        "server_identifier": offer.server_identifier,
        "local_identifier": offer.ak.name.hex(),
        "public": b64(offer.ak.public),
        "allowable_hash_algorithms": [offer.ak.hash_alg],
        "allowable_signature_schemes": [offer.ak.signing_alg],
    }


def capabilities_request(offer: Offer) -> dict[str, Any]:
    """The negotiation body: a tpm_quote by the AK, and the logs this machine has."""
    quote = {
        "component_version": COMPONENT_VERSION,
        # Only what the AK can sign: its scheme is fixed when it is created.
        "hash_algorithms": [offer.ak.hash_alg],
        "signature_schemes": [offer.ak.signing_alg],
        "available_subjects": {offer.ak.hash_alg: list(range(PCR_COUNT))},
        "certification_keys": [_certification_key(offer)],
    }
    items: list[dict[str, Any]] = [_item("certification", "tpm_quote", quote)]
    if offer.uefi_entries is not None:
        uefi: dict[str, Any] = {
            "evidence_version": offer.uefi_version,
            "entry_count": offer.uefi_entries,
            "supports_partial_access": False,
            "appendable": False,
            "formats": [UEFI_FORMAT],
        }
        items.append(_item("log", "uefi_log", uefi))
    if offer.ima_entries is not None:
        ima: dict[str, Any] = {
            "entry_count": offer.ima_entries,
            "supports_partial_access": True,
            "appendable": True,
            "formats": [IMA_FORMAT],
        }
        items.append(_item("log", "ima_log", ima))
    attrs = {"evidence_supported": items, "system_info": {"boot_time": offer.boot_time}}
    return document("attestation", attrs)


def _item(cls: str, kind: str, capabilities: dict[str, Any]) -> dict[str, Any]:
    return {"evidence_class": cls, "evidence_type": kind, "capabilities": capabilities}


def parse_requested(doc: Any) -> tuple[Requested, ...]:
    """``evidence_requested`` of a 201 answer, in order; unknown kinds are an error."""
    items = field(attributes(doc), "evidence_requested", list)
    return tuple(_requested(item) for item in items)


def _requested(item: Any) -> Requested:
    kind = field(item, "evidence_type", str)
    params = field(item, "chosen_parameters", dict)
    if kind == "tpm_quote":
        return _quote_request(params)
    if kind == "ima_log":
        if params.get("format", IMA_FORMAT) != IMA_FORMAT:
            raise BadVerifierResponse(f"IMA log format {params.get('format')!r} not offered")
        offset = field(params, "starting_offset", int)
        count = params.get("entry_count")
        if offset < 0 or (count is not None and (not isinstance(count, int) or count < 0)):
            raise BadVerifierResponse("the IMA starting_offset or entry_count is invalid")
        return ImaRequest(offset, count)
    if kind == "uefi_log":
        return UefiRequest()
    raise BadVerifierResponse(f"the verifier requested evidence {kind!r}, which was not offered")


def _quote_request(params: dict[str, Any]) -> QuoteRequest:
    challenge = b64decode(field(params, "challenge", str), "challenge")
    if not challenge or len(challenge) > 64:
        raise BadVerifierResponse(f"a {len(challenge)}-byte quote challenge does not fit")
    hash_alg = field(params, "hash_algorithm", str)
    subjects = field(params, "selected_subjects", dict)
    pcrs = subjects.get(hash_alg)
    if not isinstance(pcrs, list) or not pcrs:
        raise BadVerifierResponse(f"no PCRs selected in the {hash_alg} bank")
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < PCR_COUNT for p in pcrs):
        raise BadVerifierResponse(f"selected PCRs {pcrs!r} are not PCR numbers")
    scheme = field(params, "signature_scheme", str)
    return QuoteRequest(challenge, scheme, hash_alg, tuple(sorted(set(pcrs))))


def quote_evidence(quote: KeylimeQuote) -> dict[str, Any]:
    data = {
        "message": b64(quote.attest),
        "signature": b64(quote.signature),
        "subject_data": b64(quote.pcr_blob),
    }
    return {"evidence_class": "certification", "evidence_type": "tpm_quote", "data": data}


def ima_evidence(part: ImaSlice, limit: Optional[int]) -> dict[str, Any]:
    """The lines of ``part``, cut to ``limit`` entries when the verifier gave a count."""
    lines = part.text.splitlines(keepends=True)
    if limit is not None:
        lines = lines[:limit]
    data = {"entries": "".join(lines), "entry_count": len(lines)}
    return {"evidence_class": "log", "evidence_type": "ima_log", "data": data}


def uefi_evidence(log: bytes) -> dict[str, Any]:
    return {"evidence_class": "log", "evidence_type": "uefi_log", "data": {"entries": b64(log)}}


def evidence_request(items: list[dict[str, Any]]) -> dict[str, Any]:
    return document("attestation", {"evidence_collected": items})


def error_request() -> dict[str, Any]:
    """What rust-keylime sends when collection failed (response_handler.rs)."""
    return document("error", {"evidence_collected": []})
