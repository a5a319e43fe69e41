"""The two key derivation functions of TPM 2.0 (TCG TPM 2.0 Library Part 1, "Key Derivation").

Section numbers are those of Part 1 revision 1.59 (§11.4.10.x); revisions up to 1.38 number the
same text §11.4.9.x.

* ``kdfa`` — §11.4.10.2 KDFa: the SP800-108 KDF in counter mode with HMAC as the PRF::

      K(i) = HMAC_hash(key, [i]32 || Label || 0x00 || ContextU || ContextV || [bits]32)

  used by MakeCredential for the storage key ("STORAGE") and the HMAC key ("INTEGRITY").
* ``kdfe`` — §11.4.10.3 KDFe: the SP800-56A concatenation KDF::

      K(i) = Hash([i]32 || Z || Use || 0x00 || PartyUInfo || PartyVInfo)

  used to turn an ECDH shared secret into a seed ("IDENTITY", "DUPLICATE", "SECRET").

Both take the hash as a ``cryptography`` hash object, the label as text (the TPM's labels are
ASCII words), and a size in *bits*.  The counter starts at 1 and the output is the first
``ceil(bits / 8)`` octets of ``K(1) || K(2) || …``.  When ``bits`` is not a multiple of 8 the
TPM reference implementation clears the unused high-order bits of the first octet; so do we.

Pure functions on bytes: no I/O, no state.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

__all__ = ["MAX_KDF_BITS", "kdfa", "kdfe"]

# Every value a TPM derives with these functions lands in a TPM2B buffer, whose UINT16 size
# field caps it at 65535 octets (Part 2 §10.4).  Asking for more is a caller bug, not a need.
MAX_KDF_BITS = 0xFFFF * 8

# Both KDFs encode the iteration counter and the output length as 32-bit big-endian integers
# (Part 1 §11.4.10.2 "[i]2" and "[L]2"; §11.4.10.3 "[i]2").
_COUNTER_OCTETS = 4

# Part 1 §11.4.10.2: the label is a NUL-terminated octet string; if the caller's label lacks the
# terminating 0x00, one is appended.  §11.4.10.3 says the same of KDFe's "Use".
_LABEL_TERMINATOR = b"\x00"


def kdfa(
    hash_alg: hashes.HashAlgorithm,
    key: bytes,
    label: str,
    context_u: bytes,
    context_v: bytes,
    bits: int,
) -> bytes:
    """TPM KDFa (Part 1 §11.4.10.2): ``bits`` of key stream from HMAC-``hash_alg`` over ``key``."""
    size = _output_octets(bits)
    fixed = _label_octets(label) + context_u + context_v + bits.to_bytes(_COUNTER_OCTETS, "big")
    stream = bytearray()
    counter = 1
    while len(stream) < size:
        mac = hmac.HMAC(key, hash_alg)
        mac.update(counter.to_bytes(_COUNTER_OCTETS, "big"))
        mac.update(fixed)
        stream += mac.finalize()
        counter += 1
    return _truncate(stream, bits)


def kdfe(
    hash_alg: hashes.HashAlgorithm,
    z: bytes,
    label: str,
    party_u: bytes,
    party_v: bytes,
    bits: int,
) -> bytes:
    """TPM KDFe (Part 1 §11.4.10.3): ``bits`` of key stream from the shared secret ``z``.

    For ECDH, ``z`` is the x-coordinate of the shared point, ``party_u`` the x-coordinate of the
    ephemeral (initiator's) public key and ``party_v`` that of the static (responder's) key, each
    padded to the curve's coordinate size (Part 1 Annex C.6).
    """
    size = _output_octets(bits)
    other_info = _label_octets(label) + party_u + party_v
    stream = bytearray()
    counter = 1
    while len(stream) < size:
        digest = hashes.Hash(hash_alg)
        digest.update(counter.to_bytes(_COUNTER_OCTETS, "big"))
        digest.update(z)
        digest.update(other_info)
        stream += digest.finalize()
        counter += 1
    return _truncate(stream, bits)


def _output_octets(bits: int) -> int:
    if not 0 < bits <= MAX_KDF_BITS:
        raise ValueError(f"KDF output size must be 1..{MAX_KDF_BITS} bits, not {bits}")
    return (bits + 7) // 8


def _label_octets(label: str) -> bytes:
    if not label.isascii():
        raise ValueError("TPM KDF labels are ASCII")
    encoded = label.encode("ascii")
    if encoded.endswith(_LABEL_TERMINATOR):
        return encoded
    return encoded + _LABEL_TERMINATOR


def _truncate(stream: bytearray, bits: int) -> bytes:
    out = stream[: (bits + 7) // 8]
    spare = bits % 8
    if spare:
        # Reference implementation, CryptKDFa/CryptKDFe: keep only the low ``bits % 8`` bits of
        # the leading octet so the result is exactly ``bits`` long as a big-endian number.
        out[0] &= (1 << spare) - 1
    return bytes(out)
