"""The policy decision for one IMA entry whose template hash already holds.

Follows keylime/ima/ima.py (_validate_ima_ng, _validate_ima_sig, _validate_ima_buf):

* ``ima``/``ima-ng``: a path matching ``excludes`` is accepted; otherwise the path must be in
  ``digests`` and the file digest among its values.
* ``ima-sig``: as ``ima-ng``, except that a signature valid under a verification key or a
  learned key accepts the entry; a bad signature is not itself fatal when the digest is
  allowed (Keylime falls back to the digest list).
* ``ima-buf``: a buffer holding a key is a key loaded into keyring ``path``: accepted if the
  keyring is ignored (``*`` ignores all) and then not learned; otherwise its digest must be in
  ``keyrings[path]``, and then the key is learned.  Any other buffer is checked against
  ``ima-buf`` (device-mapper policies are not supported).  ``excludes`` apply to all of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from attest_protocol.ima.entry import ImaEntry
from attest_protocol.policy.keys import (
    LearnedKey,
    PublicKey,
    UnsupportedKeyError,
    key_from_buffer,
    verify_signature,
)
from attest_protocol.policy.model import RuntimePolicy
from attest_protocol.policy.verdict import ImaFailure, ImaFailureReason

# ima.ignored_keyrings member that ignores every keyring (keylime/ima/ima.py).
IGNORE_ALL_KEYRINGS = "*"

Outcome = tuple[Optional[ImaFailure], Optional[LearnedKey]]


def check_digest(
    table: Mapping[str, frozenset[bytes]], entry: ImaEntry, policy: RuntimePolicy
) -> Optional[ImaFailure]:
    """Excluded, or the digest is listed for the path: None; else the failure."""
    regex = policy.exclude_regex
    if regex is not None and regex.match(entry.path):
        return None
    allowed = table.get(entry.path)
    if allowed is None:
        return ImaFailure.of(entry, ImaFailureReason.NOT_IN_POLICY)
    if entry.digest in allowed:
        return None
    return ImaFailure.of(
        entry,
        ImaFailureReason.DIGEST_MISMATCH,
        f"{entry.digest_alg}:{entry.digest.hex()} is not an allowed digest",
    )


def check_signed(
    digests: Mapping[str, frozenset[bytes]],
    keys: Mapping[int, PublicKey],
    entry: ImaEntry,
    policy: RuntimePolicy,
) -> Optional[ImaFailure]:
    signature = entry.signature
    if signature and verify_signature(keys, signature, entry.digest, entry.digest_alg):
        return None
    failure = check_digest(digests, entry, policy)
    if failure is None or not signature:
        return failure
    return ImaFailure.of(
        entry,
        ImaFailureReason.BAD_SIGNATURE,
        f"signature does not verify and {failure.reason.value}",
        failure.reason,
    )


def check_buffer(entry: ImaEntry, policy: RuntimePolicy) -> Outcome:
    try:
        found = key_from_buffer(entry.buffer or b"")
    except UnsupportedKeyError as exc:
        bad = ImaFailure.of(entry, ImaFailureReason.UNSUPPORTED_KEY, str(exc))
        return bad, None
    if found is None:
        return check_digest(policy.ima_buf, entry, policy), None
    ignored = policy.ignored_keyrings
    if IGNORE_ALL_KEYRINGS in ignored or entry.path in ignored:
        return None, None
    failure = check_digest(policy.keyrings, entry, policy)
    if failure is not None:
        return failure, None
    key, keyid = found
    return None, LearnedKey(entry.path, keyid, key)
