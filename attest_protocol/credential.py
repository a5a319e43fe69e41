"""TPM2_MakeCredential in software, and the credential blob Keylime's registrar sends.

The registrar proves that an AK lives in the same TPM as an EK by encrypting a random challenge
to the EK, bound to the AK's name (TCG TPM 2.0 Part 1 §24 "Credential Protection"); only that
TPM's TPM2_ActivateCredential gives it back.  ``make_credential`` is that encryption:

1. a seed, shared with the EK's TPM: for an RSA EK, ``nameAlg``-digest-size random octets
   encrypted with RSA-OAEP (hash = ``nameAlg``, label ``"IDENTITY\\0"``); for an ECC EK, the
   KDFe of a one-pass ECDH with an ephemeral key (``"IDENTITY"``, ephemeral x, EK x), the
   encrypted secret being the ephemeral TPMS_ECC_POINT (Part 1 Annex B.10, Annex C.6);
2. the credential, as a TPM2B_DIGEST, encrypted with AES-CFB (zero IV) under
   ``KDFa(nameAlg, seed, "STORAGE", name, "", EK symmetric key bits)``;
3. an outer HMAC over ``encIdentity || name`` under
   ``KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)``.

The result travels in the format tpm2-tools' ``tpm2_makecredential`` writes and Keylime
(``keylime/tpm/tpm_util.py``, ``makecredential``) sends::

    UINT32 magic 0xBADCC0DE | UINT32 version 1 | TPM2B_ID_OBJECT | TPM2B_ENCRYPTED_SECRET

Integers are big-endian, as in all TPM marshalling.  Pure functions; the seed sharing
(``attest_protocol.seed_sharing``) draws its randomness from ``random_bytes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from attest_protocol.errors import AlgorithmError, CredentialError, ParseError
from attest_protocol.kdf import kdfa
from attest_protocol.seed_sharing import share_seed
from attest_protocol.tpm2.constants import (
    MAX_DIGEST_BYTES,
    TpmAlg,
    TpmaObject,
    hash_for_alg,
)
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.public import TpmPublic

# tpm2-tools' file header for credential blobs (tpm2_makecredential output,
# tpm2_activatecredential input); Keylime writes the same header.
CREDENTIAL_BLOB_MAGIC = 0xBADCC0DE
CREDENTIAL_BLOB_VERSION = 1
_SIZE_BYTES = 2  # every TPM2B starts with a UINT16 size (Part 2 §10.4)

# TPM2_MakeCredential takes the credential as a TPM2B_DIGEST and refuses one longer than the
# digest of the EK's nameAlg (Part 3 §12.6.1, TPM_RC_SIZE); this is the bound over all nameAlgs.
MAX_CREDENTIAL_SIZE = MAX_DIGEST_BYTES

# TPMS_ID_OBJECT (Part 2 §11.4.3): integrityHMAC (TPM2B_DIGEST) then encIdentity, the
# encrypted TPM2B_DIGEST credential: at most two size fields and two digests.
MAX_ID_OBJECT_SIZE = 2 * (_SIZE_BYTES + MAX_DIGEST_BYTES)

# TPMU_ENCRYPTED_SECRET (Part 2 §11.4.33): the largest member is an RSA ciphertext, and 4096
# bits is the largest RSA key a TPM implements, so 512 octets (a P-521 point is 136).
MAX_ENCRYPTED_SECRET_SIZE = 4096 // 8

# KDF and OAEP labels (Part 1 §24 and the outer wrap of "Protected Storage"); kdf adds the NUL.
_IDENTITY_LABEL = "IDENTITY"  # seed sharing: OAEP label / KDFe "Use"
_STORAGE_LABEL = "STORAGE"  # symmetric key for encIdentity
_INTEGRITY_LABEL = "INTEGRITY"  # HMAC key for integrityHMAC

# TPM2_MakeCredential accepts only a restricted decryption key (Part 3 §12.6.1, TPM_RC_TYPE):
# only such a key's TPM checks the object's Name before it releases the credential.
_EK_REQUIRED_ATTRIBUTES = TpmaObject.RESTRICTED | TpmaObject.DECRYPT

_AES_BLOCK_BYTES = 16  # CFB feeds back whole 128-bit blocks (SP 800-38A §6.3)

_STRUCTURE = "credential blob"


@dataclass(frozen=True)
class CredentialBlob:
    """A decoded 0xBADCC0DE credential blob.

    Both fields are the *contents* of their TPM2B, without the UINT16 size in front:

    * ``id_object`` — the TPMS_ID_OBJECT: the TPM2B integrity HMAC, then encIdentity;
    * ``encrypted_secret`` — the TPMU_ENCRYPTED_SECRET: an RSA-OAEP ciphertext, or a marshalled
      TPMS_ECC_POINT for an ECC EK.

    The TPM layer wraps them again as TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET.  Sizes are
    checked on construction (``ValueError``): 1 to ``MAX_ID_OBJECT_SIZE`` and 1 to
    ``MAX_ENCRYPTED_SECRET_SIZE`` octets.
    """

    id_object: bytes
    encrypted_secret: bytes

    def __post_init__(self) -> None:
        for field, value, limit in (
            ("id_object", self.id_object, MAX_ID_OBJECT_SIZE),
            ("encrypted_secret", self.encrypted_secret, MAX_ENCRYPTED_SECRET_SIZE),
        ):
            if not 0 < len(value) <= limit:
                raise ValueError(f"{field} must be 1 to {limit} bytes, not {len(value)}")


def encode_credential_blob(blob: CredentialBlob) -> bytes:
    """Marshal ``blob`` with the 0xBADCC0DE header, as Keylime and tpm2-tools write it."""
    writer = Writer().u32(CREDENTIAL_BLOB_MAGIC).u32(CREDENTIAL_BLOB_VERSION)
    return writer.tpm2b(blob.id_object).tpm2b(blob.encrypted_secret).getvalue()


def parse_credential_blob(data: bytes) -> CredentialBlob:
    """Decode a 0xBADCC0DE credential blob strictly.

    Raises ParseError (structure ``"credential blob"``, offset into ``data``) on a wrong magic
    or version, an empty TPM2B or one over the TPM's bound for it, a truncated field, an
    integrity HMAC that does not fit its TPMS_ID_OBJECT, or bytes after the last field.
    """
    reader = Reader(data, _STRUCTURE)
    magic = reader.u32()
    if magic != CREDENTIAL_BLOB_MAGIC:
        raise reader.error(f"magic is {magic:#010x}, not {CREDENTIAL_BLOB_MAGIC:#x}", 0)
    version = reader.u32()
    if version != CREDENTIAL_BLOB_VERSION:
        raise reader.error(f"version {version} is not {CREDENTIAL_BLOB_VERSION}", 4)
    id_object_at = reader.offset + _SIZE_BYTES
    id_object = _nonempty_tpm2b(reader, MAX_ID_OBJECT_SIZE, "TPM2B_ID_OBJECT")
    _check_id_object(id_object, id_object_at)
    secret = _nonempty_tpm2b(reader, MAX_ENCRYPTED_SECRET_SIZE, "TPM2B_ENCRYPTED_SECRET")
    reader.expect_end()
    return CredentialBlob(id_object=id_object, encrypted_secret=secret)


def _nonempty_tpm2b(reader: Reader, limit: int, what: str) -> bytes:
    start = reader.offset
    value = reader.tpm2b(limit, what)
    if not value:
        raise reader.error(f"{what} is empty", start)
    return value


def _check_id_object(id_object: bytes, base: int) -> None:
    """TPMS_ID_OBJECT must hold a whole integrity HMAC and a non-empty encIdentity after it.

    ``base`` is where ``id_object`` starts in the blob, so errors point into the blob.
    """
    inner = Reader(id_object, _STRUCTURE)
    try:
        integrity = inner.tpm2b(MAX_DIGEST_BYTES, "integrityHMAC")
    except ParseError as exc:
        raise ParseError(_STRUCTURE, base + exc.offset, exc.reason) from exc
    if not integrity:
        raise ParseError(_STRUCTURE, base, "integrityHMAC is empty")
    if inner.remaining < _SIZE_BYTES:
        raise ParseError(_STRUCTURE, base + inner.offset, "TPMS_ID_OBJECT has no encIdentity")


# --- MakeCredential -------------------------------------------------------------------------


def make_credential(
    ek: TpmPublic,
    object_name: bytes,
    credential: bytes,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """TPM2_MakeCredential in software: a 0xBADCC0DE blob only ``ek``'s TPM can open.

    ``object_name`` is the Name of the object (the AK) the credential is bound to; the EK's
    TPM releases ``credential`` only when that object is loaded beside the EK.  The blob has
    the layout and derivations of Keylime 7.14's ``tpm_util.makecredential``.
    ``random_bytes(n)`` supplies the seed (RSA) or the ephemeral scalar (ECC).

    Raises CredentialError for an EK that is not a restricted decryption key with an
    AES-CFB storage symmetric, an unsupported type, curve or nameAlg, an ``object_name`` that
    is not a Name, or a ``credential`` that is empty or longer than the nameAlg digest.
    """
    hash_alg = _check_ek(ek)
    aes_bits = _storage_key_bits(ek)
    _check_object_name(object_name)
    if not 0 < len(credential) <= hash_alg.digest_size:
        # An empty credential proves nothing; the TPM allows it, limelet does not.
        raise CredentialError(
            f"credential is {len(credential)} bytes; the EK's nameAlg allows 1 to "
            f"{hash_alg.digest_size} (TPM2B_DIGEST, Part 3 §12.6.1)"
        )
    shared = share_seed(ek, _IDENTITY_LABEL, random_bytes=random_bytes)
    id_object = _wrap_credential(hash_alg, shared.seed, aes_bits, object_name, credential)
    return encode_credential_blob(CredentialBlob(id_object, shared.encrypted_secret))


def _check_ek(ek: TpmPublic) -> hashes.HashAlgorithm:
    """The EK's nameAlg hash, once the EK is known to be an RSA or ECC storage key."""
    if ek.type not in (TpmAlg.RSA, TpmAlg.ECC):
        raise CredentialError(f"EK type {int(ek.type):#06x} is neither RSA nor ECC")
    if ek.object_attributes & _EK_REQUIRED_ATTRIBUTES != _EK_REQUIRED_ATTRIBUTES:
        raise CredentialError("EK is not a restricted decryption key")
    try:
        return hash_for_alg(ek.name_alg)
    except AlgorithmError as exc:
        raise CredentialError(f"EK nameAlg {int(ek.name_alg):#06x} is not supported") from exc


def _storage_key_bits(ek: TpmPublic) -> int:
    """AES key size of the EK's storage symmetric; the outer wrap is AES-CFB (Part 1 §24)."""
    sym = ek.symmetric
    if sym.alg != TpmAlg.AES or sym.mode != TpmAlg.CFB or sym.key_bits not in (128, 192, 256):
        raise CredentialError(
            f"EK symmetric is {sym.alg.name}-{sym.key_bits}-{sym.mode.name}, not AES-CFB"
        )
    return sym.key_bits


def _check_object_name(name: bytes) -> None:
    """A key's Name is nameAlg (UINT16) || digest of its public area (Part 1 §16)."""
    if len(name) < _SIZE_BYTES:
        raise CredentialError("object name is too short to be a TPM Name")
    alg = int.from_bytes(name[:_SIZE_BYTES], "big")
    try:
        size = hash_for_alg(alg).digest_size
    except AlgorithmError as exc:
        raise CredentialError(f"object name uses unsupported hash {alg:#06x}") from exc
    if len(name) != _SIZE_BYTES + size:
        raise CredentialError(f"object name is {len(name)} bytes, not {_SIZE_BYTES + size}")


def _wrap_credential(
    hash_alg: hashes.HashAlgorithm, seed: bytes, aes_bits: int, name: bytes, credential: bytes
) -> bytes:
    """SecretToCredential: encrypt then MAC the TPM2B_DIGEST credential; a TPMS_ID_OBJECT."""
    sym_key = kdfa(hash_alg, seed, _STORAGE_LABEL, name, b"", aes_bits)
    enc_identity = _aes_cfb_encrypt(sym_key, Writer().tpm2b(credential).getvalue())
    hmac_key = kdfa(hash_alg, seed, _INTEGRITY_LABEL, b"", b"", hash_alg.digest_size * 8)
    mac = hmac.HMAC(hmac_key, hash_alg)
    mac.update(enc_identity)
    mac.update(name)
    return Writer().tpm2b(mac.finalize()).put(enc_identity).getvalue()


def _aes_cfb_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """AES in full-block CFB mode with an all-zero IV, as the outer wrap uses (Part 1 §24).

    SP 800-38A §6.3: ``C_j = P_j XOR AES_K(C_(j-1))`` with ``C_0 = IV``; a short last block
    uses the leading octets of its keystream.  A zero IV is safe here because each seed, and
    so each key, encrypts one message.  Built on single-block AES because cryptography 50
    moved its CFB mode to the "decrepit" package and warns on the old name.
    """
    block = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - CFB keystream
    feedback = bytes(_AES_BLOCK_BYTES)
    out = bytearray()
    for start in range(0, len(plaintext), _AES_BLOCK_BYTES):
        keystream = block.update(feedback)
        chunk = bytes(p ^ k for p, k in zip(plaintext[start : start + _AES_BLOCK_BYTES], keystream))
        out += chunk
        feedback = chunk
    return bytes(out)
