"""Describe parsed boot events as the JSON that Keylime's measured-boot policies read.

Keylime runs ``tpm2_eventlog`` on the binary log and reads its YAML back as data
(keylime/mba/elparsing/tpm2_tools_elparser.py, with tpm_bootlog_enrich.py and the string
unescaping for tpm2-tools >= 5.2).  Its policies (keylime/mba/elchecking/example.py) only look
at some of that structure, and this module produces exactly that part, from our own parse:

* every event: ``EventNum``, ``PCRIndex``, ``EventType`` (the PFP name), ``Digests``
  (``[{"AlgorithmId": "sha256", "Digest": hex}]``) and ``Event``;
* ``EV_SEPARATOR`` and other opaque events: ``Event`` is the data in lowercase hex;
* ``EV_EFI_ACTION``: the text; ``EV_IPL``: ``{"String": text}`` (one trailing NUL dropped, as
  Keylime's unescape does);
* UEFI variable events (PFP §10.4.5.2 UEFI_VARIABLE_DATA): ``VariableName`` (GUID text),
  ``UnicodeName`` and ``VariableData`` - ``{"Enabled": "Yes"|"No"}`` for SecureBoot and
  MokListTrusted, EFI_SIGNATURE_LISTs for PK, KEK, db and dbx configuration, the one
  EFI_SIGNATURE_DATA of a ``db`` authority, the certificates of a ``vendor_db`` authority
  (as Keylime's enrich step splits them), ``{"String": text}`` for SbatLevel, else hex.

Pure: bytes in, plain data out.  A variable event whose data does not decode is described as
hex, which no policy test accepts as a variable.
"""

from __future__ import annotations

import uuid
from typing import Any

from attest_protocol.eventlog.parse import BootEvent, EventType
from attest_protocol.tpm2.constants import TpmAlg

# tpm2_eventlog's algorithm names (tpm2-tools lib/tpm2_alg_util.c).
ALG_NAMES: dict[int, str] = {
    TpmAlg.SHA1: "sha1",
    TpmAlg.SHA256: "sha256",
    TpmAlg.SHA384: "sha384",
    TpmAlg.SHA512: "sha512",
    TpmAlg.SM3_256: "sm3_256",
}
# Event types newer than our EventType enum (PFP 1.05 Table 9).
_EXTRA_TYPE_NAMES = {
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
}
_VARIABLE_EVENTS = frozenset(
    {
        EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
        EventType.EV_EFI_VARIABLE_BOOT,
        EventType.EV_EFI_VARIABLE_AUTHORITY,
        0x8000000C,
    }
)
# Variables tpm2_eventlog prints as EFI_SIGNATURE_LISTs in configuration events.
_SIGNATURE_LIST_VARS = frozenset({"PK", "KEK", "db", "dbx"})
_ENABLED_VARS = frozenset({"SecureBoot", "MokListTrusted"})
GUID_BYTES = 16
# EFI_SIGNATURE_LIST header: SignatureType GUID, then ListSize, HeaderSize, SignatureSize u32.
_SIG_LIST_HEADER = GUID_BYTES + 12
# A vendor_db authority holds owner GUID + DER certificate; Keylime finds each certificate by
# its SEQUENCE header (0x30 0x82 and a 2-byte length) within 100 bytes after the GUID.
_DER_SEQUENCE_LONG = b"\x30\x82"
_DER_SEARCH_BYTES = 100


def event_type_name(event_type: int) -> str:
    if event_type in _EXTRA_TYPE_NAMES:
        return _EXTRA_TYPE_NAMES[event_type]
    try:
        return EventType(event_type).name
    except ValueError:
        return f"EV_UNKNOWN_0x{event_type:08x}"


def guid_text(raw: bytes) -> str:
    """An EFI_GUID (little-endian first three fields) in its canonical text form."""
    return str(uuid.UUID(bytes_le=raw))


def describe_event(event: BootEvent) -> dict[str, Any]:
    digests = [
        {"AlgorithmId": ALG_NAMES.get(alg, f"alg_0x{alg:04x}"), "Digest": value.hex()}
        for alg, value in event.digests.items()
    ]
    return {
        "EventNum": event.index,
        "PCRIndex": event.pcr,
        "EventType": event_type_name(event.event_type),
        "Digests": digests,
        "Event": _event_body(event),
    }


def describe_events(events: tuple[BootEvent, ...]) -> list[dict[str, Any]]:
    return [describe_event(e) for e in events]


def _text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\0") else text


def _event_body(event: BootEvent) -> Any:
    kind = event.event_type
    if kind == EventType.EV_EFI_ACTION:
        return _text(event.data)
    if kind == EventType.EV_IPL:
        return {"String": _text(event.data)}
    if kind in _VARIABLE_EVENTS:
        try:
            return _variable(kind, event.data)
        except (ValueError, IndexError):
            return event.data.hex()
    return event.data.hex()


def _variable(kind: int, data: bytes) -> dict[str, Any]:
    if len(data) < GUID_BYTES + 16:
        raise ValueError("short UEFI_VARIABLE_DATA")
    name_chars = int.from_bytes(data[16:24], "little")
    value_len = int.from_bytes(data[24:32], "little")
    name_end = 32 + 2 * name_chars
    if name_end + value_len != len(data):
        raise ValueError("UEFI_VARIABLE_DATA lengths do not add up")
    name = data[32:name_end].decode("utf-16-le")
    value = data[name_end:]
    return {
        "VariableName": guid_text(data[:GUID_BYTES]),
        "UnicodeNameLength": name_chars,
        "VariableDataLength": value_len,
        "UnicodeName": name,
        "VariableData": _variable_data(kind, name, value),
    }


def _variable_data(kind: int, name: str, value: bytes) -> Any:
    if name in _ENABLED_VARS and len(value) <= 1:
        return {"Enabled": "Yes" if value and value[0] else "No"}
    if kind == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG and name in _SIGNATURE_LIST_VARS:
        return signature_lists(value)
    if kind == EventType.EV_EFI_VARIABLE_AUTHORITY:
        if name == "db" and len(value) > GUID_BYTES:
            return [_signature(value)]
        if name == "vendor_db":
            found = _vendor_db_signatures(value)
            return found if found else value.hex()
        if name == "SbatLevel":
            return {"String": _text(value)}
    return value.hex()


def _signature(raw: bytes) -> dict[str, str]:
    return {"SignatureOwner": guid_text(raw[:GUID_BYTES]), "SignatureData": raw[GUID_BYTES:].hex()}


def signature_lists(value: bytes) -> list[dict[str, Any]]:
    """EFI_SIGNATURE_LISTs (UEFI 2.x §32.4.1) as SignatureType plus their Keys."""
    lists, at = [], 0
    while at < len(value):
        if at + _SIG_LIST_HEADER > len(value):
            raise ValueError("truncated EFI_SIGNATURE_LIST header")
        sig_type = guid_text(value[at : at + GUID_BYTES])
        list_size, header_size, sig_size = (
            int.from_bytes(value[at + o : at + o + 4], "little") for o in (16, 20, 24)
        )
        body = at + _SIG_LIST_HEADER + header_size
        end = at + list_size
        if sig_size <= GUID_BYTES or end > len(value) or body > end or (end - body) % sig_size:
            raise ValueError("inconsistent EFI_SIGNATURE_LIST sizes")
        keys = [_signature(value[p : p + sig_size]) for p in range(body, end, sig_size)]
        lists.append({"SignatureType": sig_type, "Keys": keys})
        at = end
    return lists


def _vendor_db_signatures(value: bytes) -> list[dict[str, str]]:
    found, at = [], 0
    while at + GUID_BYTES < len(value):
        limit = min(at + GUID_BYTES + _DER_SEARCH_BYTES, len(value) - 2) + 1
        start = value.find(_DER_SEQUENCE_LONG, at + GUID_BYTES, limit)
        if start < 0 or start + 4 > len(value):
            break
        end = start + 4 + int.from_bytes(value[start + 2 : start + 4], "big")
        if end > len(value):
            break
        found.append(_signature(value[at:end]))
        at = end
    return found
