"""The UEFI variable rules of Keylime's ``example`` policy (keylime/mba/elchecking/example.py).

PCR 7 configuration variables: SecureBoot must be on (off for a reference state without
Secure Boot); PK and KEK hold only listed X.509 keys, db and vendor_db only listed X.509 keys
or SHA-256 hashes, in one GUID spelling; dbx is one SHA-256 list holding at least every listed
hash; each at most once.  Authorities: the db certificate that verified shim, shim's own,
SbatLevel and MokListRT once each; vendor_db only listed keys; MokListTrusted once, enabled or
not.  Without Secure Boot an empty key list in the reference state is not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attest_protocol.mb.refstate import Signature
from attest_protocol.mb.state import (
    CERT_SHA256,
    CERT_X509,
    EFI_GLOBAL,
    SECURITY_DB,
    SHIM_LOCK,
    Pass,
    Rule,
    key_subset,
    key_superset,
    sig_in,
)


def _keys(run: Pass, name: str) -> frozenset[Signature] | None:
    return run.ref.keys[name]


def _secure_boot(run: Pass, data: Any) -> str:
    want = "Yes" if run.ref.secureboot else "No"
    ok = isinstance(data, dict) and data.get("Enabled") == want
    return "" if ok else f"SecureBoot is not {want!a}"


def _signed_by(name: str, kinds: tuple[tuple[str, ...], ...]) -> Callable[[Pass, Any], str]:
    """PK, KEK, db, vendor_db: once, and only the listed keys (in one GUID spelling)."""

    def rule(run: Pass, data: Any) -> str:
        seen = run.once(f"config:{name}")
        allowed = _keys(run, name)
        if seen or allowed is None:
            return seen
        if any(key_subset(data, types, allowed) for types in kinds):
            return ""
        return f"{name} holds a key that is not in the reference state"

    return rule


def _dbx(run: Pass, data: Any) -> str:
    seen = run.once("config:dbx")
    required = _keys(run, "dbx")
    if seen or required is None:
        return seen
    if any(key_superset(data, t, required) for t in CERT_SHA256):
        return ""
    return "dbx lacks an entry of the reference state"


def _vendor_db_authority(run: Pass, data: Any) -> str:
    seen = run.once("authority:vendor_db")
    allowed = _keys(run, "vendor_db")
    if seen or allowed is None:
        return seen
    ok = isinstance(data, list) and all(sig_in(s, allowed) for s in data)
    return "" if ok else "vendor_db authority not in the reference state"


def _mok_trusted(run: Pass, data: Any) -> str:
    seen = run.once("authority:MokListTrusted")
    ok = isinstance(data, dict) and data.get("Enabled") in ("Yes", "No")
    return seen or ("" if ok else "MokListTrusted is neither enabled nor disabled")


def _data_once(key: str) -> Callable[[Pass, Any], str]:
    return lambda run, _data: run.once(key)


VarRule = Callable[[Pass, Any], str]
_BY_SPELLING = (CERT_X509[0],), (CERT_X509[1],)
_DB_KINDS = (CERT_X509[0], CERT_SHA256[0]), (CERT_X509[1], CERT_SHA256[1])
DRIVER_CONFIG: dict[tuple[str, str], VarRule] = {
    **{(g, "SecureBoot"): _secure_boot for g in EFI_GLOBAL},
    **{(g, "PK"): _signed_by("pk", _BY_SPELLING) for g in EFI_GLOBAL},
    **{(g, "KEK"): _signed_by("kek", _BY_SPELLING) for g in EFI_GLOBAL},
    **{(g, "db"): _signed_by("db", _DB_KINDS) for g in SECURITY_DB},
    **{(g, "vendor_db"): _signed_by("vendor_db", _DB_KINDS) for g in SECURITY_DB},
    **{(g, "dbx"): _dbx for g in SECURITY_DB},
}
AUTHORITY: dict[tuple[str, str], VarRule] = {
    **{(g, "db"): _data_once("authority:db") for g in SECURITY_DB},
    **{(g, "vendor_db"): _vendor_db_authority for g in SECURITY_DB},
    **{(g, "SbatLevel"): _data_once("authority:SbatLevel") for g in SHIM_LOCK},
    **{(g, "Shim"): _data_once("authority:Shim") for g in SHIM_LOCK},
    (SHIM_LOCK[1], "MokListTrusted"): _mok_trusted,
    (SHIM_LOCK[1], "MokListRT"): _data_once("authority:MokListRT"),
}


def variable_rule(table: Mapping[tuple[str, str], VarRule]) -> Rule:
    def rule(run: Pass, event: Any) -> str:
        body = event.get("Event")
        if not isinstance(body, dict) or "VariableName" not in body or "UnicodeName" not in body:
            return "is not a UEFI variable"
        name, unicode_name = body["VariableName"], body["UnicodeName"]
        if not isinstance(name, str) or not isinstance(unicode_name, str):
            return "is not a UEFI variable"
        check = table.get((name, unicode_name))
        if check is None:
            return f"variable {body['UnicodeName']!a} is not expected here"
        if "VariableData" not in body:
            return "has no VariableData"
        return check(run, body["VariableData"])

    return rule
