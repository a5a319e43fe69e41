"""Proof of possession: the AK certifies itself over the session's challenge.

The push agent runs ``TPM2_Certify(object = AK, signer = AK, qualifyingData = challenge)``
(rust-keylime keylime/src/tpm.rs ``certify_credential``) and sends the TPMS_ATTEST and the
TPMT_SIGNATURE.  Keylime checks it in keylime/tpm/tpm_main.py ``verify_tpm_object``: magic,
type ATTEST_CERTIFY, extraData == challenge, certified Name == Name(enrolled AK), and a
signature by that AK, hard-wired to sha256/rsassa.  Here any scheme the AK can sign with
(RSASSA, RSAPSS, ECDSA) is accepted, but only with the hash algorithms the agent's
``accept_tpm_hash_algs`` allow, so a weaker hash is still refused.

TPMS_ATTEST for certify (TCG Part 2 §10.12.8, §10.12.3)::

    magic u32 | type u16 = 0x8017 | qualifiedSigner TPM2B_NAME | extraData TPM2B_DATA
    | clockInfo | firmwareVersion u64 | name TPM2B_NAME | qualifiedName TPM2B_NAME
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass

from attest_protocol.errors import AttestProtocolError
from attest_protocol.tpm2.attest import MAX_EXTRA_DATA_BYTES, MAX_NAME_BYTES
from attest_protocol.tpm2.constants import TPM_GENERATED_VALUE
from attest_protocol.tpm2.marshal import Reader
from attest_protocol.tpm2.public import TpmPublic
from attest_protocol.tpm2.signature import parse_tpmt_signature, verify_signature

TPM_ST_ATTEST_CERTIFY = 0x8017


@dataclass(frozen=True)
class CertifyInfo:
    extra_data: bytes
    name: bytes


class ProofError(Exception):
    """The proof does not hold; the message says which check failed (never key material)."""


def parse_certify(data: bytes) -> CertifyInfo:
    """Decode a TPMS_ATTEST of type ATTEST_CERTIFY; ParseError for anything else."""
    r = Reader(data, "TPMS_ATTEST")
    if r.u32() != TPM_GENERATED_VALUE:
        raise r.error("magic is not TPM_GENERATED_VALUE", 0)
    if r.u16() != TPM_ST_ATTEST_CERTIFY:
        raise r.error("type is not TPM_ST_ATTEST_CERTIFY", 4)
    r.tpm2b(MAX_NAME_BYTES, "qualifiedSigner")
    extra = r.tpm2b(MAX_EXTRA_DATA_BYTES, "extraData")
    r.take(8 + 4 + 4 + 1 + 8)  # clockInfo and firmwareVersion: not used by the proof
    name = r.tpm2b(MAX_NAME_BYTES, "name")
    r.tpm2b(MAX_NAME_BYTES, "qualifiedName")
    r.expect_end()
    return CertifyInfo(extra, name)


def verify_proof(
    ak: TpmPublic,
    challenge: bytes,
    message: bytes,
    signature: bytes,
    accepted_hashes: Collection[str],
) -> None:
    """Raise ProofError unless ``message`` is the AK certifying itself over ``challenge``."""
    try:
        info = parse_certify(message)
        sig = parse_tpmt_signature(signature)
    except AttestProtocolError as exc:
        raise ProofError(f"malformed proof: {exc}") from None
    if not hmac.compare_digest(info.extra_data, challenge):
        raise ProofError("the proof is not over this session's challenge")
    if not hmac.compare_digest(info.name, ak.name()):
        raise ProofError("the certified key is not the agent's enrolled AK")
    if accepted_hashes and sig.hash_alg.name.lower() not in accepted_hashes:
        raise ProofError(f"signature hash {sig.hash_alg.name.lower()} is not accepted")
    try:
        verify_signature(ak, sig, message)
    except AttestProtocolError:
        raise ProofError("the signature does not verify with the agent's AK") from None
