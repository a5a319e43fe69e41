"""IMA signing keys: key ids, loading key material, and verifying ``ima-sig`` signatures.

An ``ima-sig`` signature is ``struct signature_v2_hdr`` (security/integrity/integrity.h):
type (EVM_IMA_XATTR_DIGSIG = 3 or EVM_XATTR_PORTABLE_DIGSIG = 5), version 2, hash_algo
(enum hash_algo, include/uapi/linux/hash_info.h), keyid (be32), sig_size (be16), signature.
The kernel checks it in digsig_asymmetric.c (asymmetric_verify); Keylime mirrors that in
keylime/ima/file_signatures.py (ImaKeyrings._asymmetric_verify), which this module follows:
the signature is over the file digest itself (RSA PKCS#1 v1.5 or ECDSA with DER r,s).

The v2 key id is the last four bytes of the SHA-1 of the public key (RSA: PKCS#1 DER;
EC: the uncompressed point), or of a certificate's Subject Key Identifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Callable, Optional, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest_protocol.errors import AttestProtocolError
from attest_protocol.ima.fields import SIGNATURE_V2_HEADER

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]
PUBLIC_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)

# enum evm_ima_xattr_type (security/integrity/integrity.h): the two signature types IMA
# verifies with asymmetric keys.
EVM_IMA_XATTR_DIGSIG = 3
EVM_XATTR_PORTABLE_DIGSIG = 5
SIGNATURE_TYPES = (EVM_IMA_XATTR_DIGSIG, EVM_XATTR_PORTABLE_DIGSIG)
SIGNATURE_VERSION_2 = 2
# Number of trailing SHA-1 (or SKID) bytes that form a v2 key id.
KEYID_V2_BYTES = 4

# enum hash_algo -> hash, only those Keylime verifies (file_signatures.HASH_FUNCS minus
# streebog, which pyca/cryptography cannot compute).
_HASH_ALGOS: dict[int, hashes.HashAlgorithm] = {
    # Weak, but a signature made with them is still the kernel's to report; Keylime checks them.
    1: hashes.MD5(),  # noqa: S303
    2: hashes.SHA1(),  # noqa: S303
    4: hashes.SHA256(),
    5: hashes.SHA384(),
    6: hashes.SHA512(),
    7: hashes.SHA224(),
}


@dataclasses.dataclass(frozen=True)
class LearnedKey:
    """A key IMA measured into ``keyring`` (an ``ima-buf`` entry) and the policy accepted."""

    keyring: str
    keyid: int
    public_key: PublicKey

    def der(self) -> bytes:
        """SubjectPublicKeyInfo DER, for a verifier that stores its state."""
        return self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def keyid_v2(key: PublicKey) -> int:
    """Last four bytes of the SHA-1 of the key, as evmctl and the kernel compute it."""
    if isinstance(key, rsa.RSAPublicKey):
        raw = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        raw = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return int.from_bytes(hashlib.sha1(raw).digest()[-KEYID_V2_BYTES:], "big")  # noqa: S324


class UnsupportedKeyError(AttestProtocolError, ValueError):
    """Key material that parsed but is neither RSA nor EC (IMA cannot use it either)."""


def _usable(key: object) -> PublicKey:
    if isinstance(key, PUBLIC_KEY_TYPES):
        return key
    raise UnsupportedKeyError(f"unsupported key type {type(key).__name__}")


def _from_cert(cert: x509.Certificate) -> tuple[PublicKey, int]:
    key = _usable(cert.public_key())
    try:
        skid = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return key, keyid_v2(key)
    if len(skid.digest) < KEYID_V2_BYTES:
        return key, keyid_v2(key)
    return key, int.from_bytes(skid.digest[-KEYID_V2_BYTES:], "big")


def _from_key(key: object) -> tuple[PublicKey, int]:
    usable = _usable(key)
    return usable, keyid_v2(usable)


_LOADERS: tuple[Callable[[bytes], tuple[PublicKey, int]], ...] = (
    lambda b: _from_cert(x509.load_der_x509_certificate(b)),
    lambda b: _from_cert(x509.load_pem_x509_certificate(b)),
    lambda b: _from_key(serialization.load_der_public_key(b)),
    lambda b: _from_key(serialization.load_pem_public_key(b)),
)


def key_from_buffer(data: bytes) -> Optional[tuple[PublicKey, int]]:
    """The key (and key id) in an ``ima-buf`` keyring buffer, or None if it holds no key.

    Tries what Keylime tries (file_signatures.get_pubkey): X.509 certificate and public key,
    DER then PEM.  (Keylime also tries private keys; the kernel never measures those into a
    keyring, so they are left out.)  A parsable key of another type raises
    UnsupportedKeyError, as in Keylime: a key we cannot use, not a buffer to check by digest.
    """
    for loader in _LOADERS:
        try:
            return loader(data)
        except UnsupportedKeyError:
            raise
        except (ValueError, TypeError):
            continue
    return None


def verify_signature(
    keys: Mapping[int, PublicKey], signature: bytes, digest: bytes, digest_alg: str
) -> bool:
    """True if ``signature`` (a signature_v2_hdr blob) signs ``digest`` with a key in ``keys``.

    False for anything else: wrong type or version, a hash algorithm other than the
    digest's, an unknown key id, or a signature that does not verify.
    """
    if len(signature) < SIGNATURE_V2_HEADER.size:
        return False
    sig_type, version, hash_algo, keyid, size = SIGNATURE_V2_HEADER.unpack_from(signature)
    if sig_type not in SIGNATURE_TYPES or version != SIGNATURE_VERSION_2:
        return False
    hash_fn = _HASH_ALGOS.get(hash_algo)
    key = keys.get(keyid)
    if hash_fn is None or hash_fn.name != digest_alg or key is None:
        return False
    raw = signature[SIGNATURE_V2_HEADER.size :]
    if len(raw) != size:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, digest, padding.PKCS1v15(), Prehashed(hash_fn))
        else:
            key.verify(raw, digest, ec.ECDSA(Prehashed(hash_fn)))
    except (InvalidSignature, ValueError):
        return False
    return True
