"""Pure quote building for a simulated agent: what TPM2_Quote would return, Keylime-encoded.

The PCR values are those of a freshly booted TPM: zero everywhere except PCR 16, which the
agent resets and extends with H(NK public key PEM) before quoting (rust-keylime tpm.rs
``pubkey_to_tpm_digest``), and PCR 10 when the agent keeps an IMA log (``ima_pcr10``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attest_protocol.quote import KeylimeQuote, encode_pcr_blob
from attest_protocol.tpm2.attest import ClockInfo, TpmsAttest
from attest_protocol.tpm2.constants import TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, TpmAlg
from attest_protocol.tpm2.pcr import PcrSelection
from attest_protocol.tpm2.signature import TpmtSignature

DATA_PCR = 16
IMA_PCR = 10
SHA256_BYTES = 32
# An arbitrary but fixed firmware version, as a TPM reports its own.
FIRMWARE_VERSION = 0x2019102300163636


def extend(pcr: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(pcr + digest).digest()


def data_pcr(nk_public_pem: str) -> bytes:
    return extend(bytes(SHA256_BYTES), hashlib.sha256(nk_public_pem.encode("ascii")).digest())


@dataclass(frozen=True)
class AgentTpm:
    """One simulated agent's TPM: its AK, its qualified name, and its PCR 16 value."""

    ak: ec.EllipticCurvePrivateKey
    ak_name: bytes
    pcr16: bytes

    def pcr_values(self, mask: int, ima_pcr10: bytes) -> dict[int, bytes]:
        values: dict[int, bytes] = {}
        for pcr in range(24):
            if mask >> pcr & 1:
                if pcr == DATA_PCR:
                    values[pcr] = self.pcr16
                elif pcr == IMA_PCR:
                    values[pcr] = ima_pcr10
                else:
                    values[pcr] = bytes(SHA256_BYTES)
        return values

    def quote(
        self, nonce: bytes, mask: int, clock: ClockInfo, ima_pcr10: bytes = bytes(SHA256_BYTES)
    ) -> KeylimeQuote:
        values = self.pcr_values(mask, ima_pcr10)
        return sign_quote(self.ak, self.ak_name, nonce, values, clock)


def sign_quote(
    ak: ec.EllipticCurvePrivateKey,
    ak_name: bytes,
    nonce: bytes,
    values: Mapping[int, bytes],
    clock: ClockInfo,
) -> KeylimeQuote:
    """TPMS_ATTEST over ``values`` (SHA-256 bank), signed ECDSA/SHA-256 by ``ak``."""
    selection = PcrSelection.single(TpmAlg.SHA256, values)
    digest = hashlib.sha256()
    for _, pcr in selection.ordered():
        digest.update(values[pcr])
    attest = TpmsAttest(
        TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, ak_name, nonce, clock, FIRMWARE_VERSION,
        selection, digest.digest(),
    ).encode()  # fmt: skip
    r, s = decode_dss_signature(ak.sign(attest, ec.ECDSA(hashes.SHA256())))
    signature = TpmtSignature(
        TpmAlg.ECDSA, TpmAlg.SHA256, r=r.to_bytes(32, "big"), s=s.to_bytes(32, "big")
    ).encode()
    return KeylimeQuote(attest, signature, encode_pcr_blob(TpmAlg.SHA256, values))
