"""TPMT_SIGNATURE for RSASSA, RSAPSS and ECDSA (TCG TPM 2.0 Library Part 2 §11.3), and
verifying one over a message with a TPM public key.

Layout (big-endian)::

    sigAlg u16 | hash u16 | RSA:   sig TPM2B_PUBLIC_KEY_RSA
                          | ECDSA: signatureR TPM2B_ECC_PARAMETER, signatureS TPM2B_ECC_PARAMETER

TPM2_Quote (Part 3 §18.4) signs the ``hash`` digest of the marshalled TPMS_ATTEST.  ECDSA
carries r and s as raw integers; ``cryptography`` wants them DER-encoded, as Keylime's
``ecdsa_der_from_tpm`` does by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest_protocol.errors import QuoteAlgorithmError, QuoteSignatureError
from attest_protocol.tpm2.constants import HASH_ALGS, TpmAlg, hash_for_alg
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.public import TpmPublic

# TPM2B_PUBLIC_KEY_RSA holds at most MAX_RSA_KEY_BYTES = 512 (4096-bit keys, Part 2 §11.2.4.5).
MAX_RSA_SIGNATURE_BYTES = 512
# TPM2B_ECC_PARAMETER holds at most MAX_ECC_KEY_BYTES = 66 (P-521, Part 2 §11.2.5.1).
MAX_ECC_PARAMETER_BYTES = 66

RSA_SIG_ALGS = frozenset({TpmAlg.RSASSA, TpmAlg.RSAPSS})
ECC_SIG_ALGS = frozenset({TpmAlg.ECDSA})
SIG_ALGS = RSA_SIG_ALGS | ECC_SIG_ALGS


@dataclass(frozen=True)
class TpmtSignature:
    """A signature: RSA schemes fill ``signature``, ECDSA fills ``r`` and ``s`` (big-endian)."""

    sig_alg: TpmAlg
    hash_alg: TpmAlg
    signature: bytes = b""
    r: bytes = b""
    s: bytes = b""

    def encode(self) -> bytes:
        w = Writer().u16(self.sig_alg).u16(self.hash_alg)
        if self.sig_alg in RSA_SIG_ALGS:
            w.tpm2b(self.signature)
        elif self.sig_alg in ECC_SIG_ALGS:
            w.tpm2b(self.r).tpm2b(self.s)
        else:
            raise ValueError(f"cannot encode signature scheme {self.sig_alg!r}")
        return w.getvalue()


def parse_tpmt_signature(data: bytes) -> TpmtSignature:
    r = Reader(data, "TPMT_SIGNATURE")
    alg_at = r.offset
    sig_alg = r.u16()
    if sig_alg not in SIG_ALGS:
        raise r.error(f"sigAlg {sig_alg:#06x} is not RSASSA, RSAPSS or ECDSA", alg_at)
    hash_at = r.offset
    hash_alg = r.u16()
    if hash_alg not in HASH_ALGS:
        raise r.error(f"hash {hash_alg:#06x} is not a supported hash", hash_at)
    if sig_alg in RSA_SIG_ALGS:
        sig = TpmtSignature(TpmAlg(sig_alg), TpmAlg(hash_alg), r.tpm2b(MAX_RSA_SIGNATURE_BYTES))
    else:
        sig_r = r.tpm2b(MAX_ECC_PARAMETER_BYTES, "signatureR")
        sig_s = r.tpm2b(MAX_ECC_PARAMETER_BYTES, "signatureS")
        sig = TpmtSignature(TpmAlg(sig_alg), TpmAlg(hash_alg), r=sig_r, s=sig_s)
    r.expect_end()
    return sig


def check_scheme_fits_key(pub: TpmPublic, sig: TpmtSignature) -> None:
    """Raise QuoteAlgorithmError unless ``sig``'s scheme can come from ``pub``."""
    allowed = RSA_SIG_ALGS if pub.is_rsa else ECC_SIG_ALGS
    if sig.sig_alg not in allowed:
        raise QuoteAlgorithmError(f"{sig.sig_alg.name} signature from a {pub.type.name} key")
    # A key with a fixed scheme signs only with that scheme (Part 3 TPM2_Quote, inScheme
    # must be NULL or equal to the key's scheme), so anything else was not made by that key.
    if pub.scheme.alg != TpmAlg.NULL and (sig.sig_alg, sig.hash_alg) != tuple(pub.scheme):
        raise QuoteAlgorithmError(
            f"{sig.sig_alg.name}/{sig.hash_alg.name} signature from a key whose scheme is "
            f"{pub.scheme.alg.name}/{pub.scheme.hash_alg.name}"
        )


def verify_signature(pub: TpmPublic, sig: TpmtSignature, message: bytes) -> None:
    """Check ``sig`` over ``message`` with ``pub``.

    Raises QuoteAlgorithmError when the scheme does not fit the key, QuoteSignatureError when
    the signature does not verify.  Other errors (a broken key) are not swallowed.
    """
    check_scheme_fits_key(pub, sig)
    key = pub.public_key()
    algorithm = hash_for_alg(sig.hash_alg)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig.signature, message, _rsa_padding(sig), algorithm)
        else:
            der = encode_dss_signature(_int(sig.r), _int(sig.s))
            key.verify(der, message, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise QuoteSignatureError("signature does not verify with the attestation key") from None


def _rsa_padding(sig: TpmtSignature) -> padding.AsymmetricPadding:
    if sig.sig_alg == TpmAlg.RSAPSS:
        # TPMs use a salt as long as the digest (FIPS 186-4) or the longest that fits (older
        # parts, Part 1 Annex B.7); AUTO reads the salt length from the signature itself.
        return padding.PSS(
            mgf=padding.MGF1(hash_for_alg(sig.hash_alg)), salt_length=padding.PSS.AUTO
        )
    return padding.PKCS1v15()


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")
