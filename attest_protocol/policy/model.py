"""Load and validate a Keylime runtime policy (JSON) into a frozen :class:`RuntimePolicy`.

The format is Keylime 7.14's (keylime/ima/ima.py, RUNTIME_POLICY_SCHEMA)::

    {"meta": {"version": 1, "generator": 0..3, "timestamp": "..."},
     "release": 0,
     "digests":  {"/path": ["<lowercase hex>", ...]},     accepted file digests per path
     "excludes": ["<regex>", ...],                        paths never checked (re.match)
     "keyrings": {"<keyring>": ["<hex>", ...]},           accepted digests of keys loaded
     "ima": {"ignored_keyrings": [...], "log_hash_alg": "sha1", "dm_policy": null},
     "ima-buf":  {"<name>": ["<hex>", ...]},              accepted digests of other buffers
     "verification-keys": "<JSON {keyids: [int], pubkeys: [base64 DER]} or empty>"}

Every member Keylime requires is required here.  Where Keylime logs and carries on we stop
with a named error: a bad verification key, an ``excludes`` entry that does not compile on
its own.  A DSSE-signed envelope is not unwrapped here (its signature is the tenant's
business, keylime/signing.py); give this function the payload.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Optional

from cryptography.hazmat.primitives import serialization

from attest_protocol.policy.errors import (
    RuntimePolicyFormatError,
    RuntimePolicyKeyError,
    RuntimePolicyRegexError,
    RuntimePolicyVersionError,
)
from attest_protocol.policy.keys import PUBLIC_KEY_TYPES, PublicKey, keyid_v2
from attest_protocol.tpm2.constants import TpmAlg

# keylime/ima/ima.py RUNTIME_POLICY_CURRENT_VERSION.
RUNTIME_POLICY_VERSION = 1
# A policy generated from a whole distribution repository is tens of MB; this bounds a
# hostile upload while leaving ten times that room.
MAX_RUNTIME_POLICY_BYTES = 256 * 1024 * 1024
# Hex lengths of the digests IMA can log that Keylime's schema admits ("^[0-9a-f]{40,128}$"):
# SHA-1, SHA-224, SHA-256 (also SM3, Streebog-256), SHA-384, SHA-512.
DIGEST_HEX_LENGTHS = frozenset({40, 56, 64, 96, 128})
# Keylime's RUNTIME_POLICY_GENERATOR enum spans 0..3.
MAX_GENERATOR = 3
# ima.log_hash_alg values Keylime's schema admits.
LOG_HASH_ALGS: dict[str, TpmAlg] = {
    "sha1": TpmAlg.SHA1,
    "sha256": TpmAlg.SHA256,
    "sha384": TpmAlg.SHA384,
    "sha512": TpmAlg.SHA512,
}
REQUIRED_MEMBERS = (
    "meta",
    "release",
    "digests",
    "excludes",
    "keyrings",
    "ima",
    "ima-buf",
    "verification-keys",
)
_DIGEST_HEX = re.compile(r"[0-9a-f]+", re.ASCII)

Digests = Mapping[str, frozenset[bytes]]


@dataclasses.dataclass(frozen=True)
class RuntimePolicy:
    """A validated runtime policy; digests are kept as bytes for fast lookups.

    ``exclude_regex`` is Keylime's one combined alternation (validators.valid_exclude_list),
    matched with ``re.match`` (anchored at the start only), or None when there are none.
    """

    release: int
    digests: Digests
    excludes: tuple[str, ...]
    exclude_regex: Optional[re.Pattern[str]]
    keyrings: Digests
    ignored_keyrings: frozenset[str]
    log_hash_alg: TpmAlg
    ima_buf: Digests
    verification_keys: Mapping[int, PublicKey]


def _fail(where: str, reason: str) -> RuntimePolicyFormatError:
    return RuntimePolicyFormatError(where, reason)


def _member(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise _fail(f"{where}{name}", "missing")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(f"{where}{name}", f"must be a JSON {kind.__name__}")
    return value


def _digest_table(obj: Mapping[str, Any], name: str) -> dict[str, frozenset[bytes]]:
    table = _member(obj, name, dict, "")
    out: dict[str, frozenset[bytes]] = {}
    for key, values in table.items():
        where = f"{name}.{key}"
        if not isinstance(values, list) or not values:
            raise _fail(where, "must be a non-empty list of hex digests")
        parsed = set()
        for i, value in enumerate(values):
            if not (
                isinstance(value, str)
                and len(value) in DIGEST_HEX_LENGTHS
                and _DIGEST_HEX.fullmatch(value)
            ):
                raise _fail(f"{where}[{i}]", "not a lowercase hex digest of a known length")
            parsed.add(bytes.fromhex(value))
        out[key] = frozenset(parsed)
    return out


def _string_list(obj: Mapping[str, Any], name: str, where: str) -> list[str]:
    items = _member(obj, name, list, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise _fail(f"{where}{name}[{i}]", "must be a string")
    return list(items)


def compile_excludes(patterns: list[str]) -> Optional[re.Pattern[str]]:
    """One compiled alternation, the way Keylime builds it, after checking each pattern."""
    if not patterns:
        return None
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RuntimePolicyRegexError(f"excludes[{i}]", pattern, str(exc)) from None
    combined = "(" + ")|(".join(patterns) + ")"
    try:
        return re.compile(combined)
    except re.error as exc:  # e.g. a back-reference whose group number shifted
        raise RuntimePolicyRegexError("excludes", combined, str(exc)) from None


def _check_meta(policy: Mapping[str, Any]) -> None:
    meta = _member(policy, "meta", dict, "")
    version = _member(meta, "version", int, "meta.")
    if version != RUNTIME_POLICY_VERSION:
        raise RuntimePolicyVersionError(
            "meta.version", f"is {version}, only {RUNTIME_POLICY_VERSION} is supported"
        )
    generator = _member(meta, "generator", int, "meta.")
    if not 0 <= generator <= MAX_GENERATOR:
        raise _fail("meta.generator", f"must be 0..{MAX_GENERATOR}")


def load_verification_keys(text: str) -> dict[int, PublicKey]:
    """Keylime's tenant keyring string (file_signatures.ImaKeyring.to_string), "" for none."""
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimePolicyKeyError("verification-keys", f"not JSON: {exc.msg}") from None
    if isinstance(obj, str):  # Keylime's database stores it JSON-encoded twice
        return load_verification_keys(obj)
    if not isinstance(obj, dict):
        raise RuntimePolicyKeyError("verification-keys", "must be a JSON object")
    pubkeys = _string_list(obj, "pubkeys", "verification-keys.")
    keyids = _member(obj, "keyids", list, "verification-keys.")
    keys: dict[int, PublicKey] = {}
    for i, b64 in enumerate(pubkeys):
        where = f"verification-keys.pubkeys[{i}]"
        try:
            key = serialization.load_der_public_key(base64.b64decode(b64, validate=True))
        except (ValueError, binascii.Error):
            raise RuntimePolicyKeyError(where, "not a base64 DER public key") from None
        if not isinstance(key, PUBLIC_KEY_TYPES):
            raise RuntimePolicyKeyError(where, f"unsupported key type {type(key).__name__}")
        keyid = keyids[i] if i < len(keyids) else None
        if keyid is not None and (not isinstance(keyid, int) or isinstance(keyid, bool)):
            raise RuntimePolicyKeyError(f"verification-keys.keyids[{i}]", "must be an integer")
        keys[keyid or keyid_v2(key)] = key
    return keys


def load_runtime_policy(data: bytes) -> RuntimePolicy:
    """Parse and validate a runtime policy; :class:`RuntimePolicyError` names what is wrong."""
    if len(data) > MAX_RUNTIME_POLICY_BYTES:
        raise _fail("", f"larger than {MAX_RUNTIME_POLICY_BYTES} bytes")
    try:
        policy = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail("", f"not JSON: {exc}") from None
    if not isinstance(policy, dict):
        raise _fail("", "must be a JSON object")
    for name in REQUIRED_MEMBERS:
        _member(policy, name, object, "")
    _check_meta(policy)
    release = _member(policy, "release", int, "")
    if release < 0:
        raise _fail("release", "must not be negative")
    ima = _member(policy, "ima", dict, "")
    alg_name = _member(ima, "log_hash_alg", str, "ima.")
    if alg_name not in LOG_HASH_ALGS:
        raise _fail("ima.log_hash_alg", f"must be one of {sorted(LOG_HASH_ALGS)}")
    if _member(ima, "dm_policy", object, "ima.") is not None:
        raise _fail("ima.dm_policy", "device-mapper policies are not supported; use null")
    excludes = _string_list(policy, "excludes", "")
    return RuntimePolicy(
        release=release,
        digests=_digest_table(policy, "digests"),
        excludes=tuple(excludes),
        exclude_regex=compile_excludes(excludes),
        keyrings=_digest_table(policy, "keyrings"),
        ignored_keyrings=frozenset(_string_list(ima, "ignored_keyrings", "ima.")),
        log_hash_alg=LOG_HASH_ALGS[alg_name],
        ima_buf=_digest_table(policy, "ima-buf"),
        verification_keys=_member_keys(policy),
    )


def _member_keys(policy: Mapping[str, Any]) -> dict[int, PublicKey]:
    return load_verification_keys(_member(policy, "verification-keys", str, ""))
