"""The TPM as the agent sees it: a Protocol and the frozen values it returns.

The daemon picks an implementation at start-up (the tpm2-pytss backend for a real TPM or a
swtpm; a fake for unit tests) and passes it down; nothing imports a backend module globally.
Every method is async; an implementation must never run two TPM commands of different callers
interleaved (the pytss backend serialises them behind a one-slot CapacityLimiter).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Protocol

from attest_protocol.keylime_facts import DATA_PCR
from attest_protocol.quote import KeylimeQuote

__all__ = ["DATA_PCR", "MAX_NONCE_BYTES", "AkInfo", "EkInfo", "Tpm"]

# TPM2_Quote's qualifyingData (TPM2B_DATA); rust-keylime refuses longer nonces
# (tpm.rs MAX_NONCE_SIZE).  The API's nonce is ASCII, so this is its length in characters.
MAX_NONCE_BYTES = 64


@dataclass(frozen=True)
class EkInfo:
    """The endorsement key.

    ``public`` is the marshalled TPM2B_PUBLIC; ``handle`` the TPM handle it is loaded at
    (a persistent 0x81xxxxxx when configured with ``ek_handle``, else a transient 0x80xxxxxx);
    ``encryption_alg`` is Keylime's name for its type ("rsa" or "ecc").
    """

    public: bytes
    handle: int
    encryption_alg: str


@dataclass(frozen=True)
class AkInfo:
    """The attestation key.

    ``public`` is the marshalled TPM2B_PUBLIC, ``name`` its TPM Name (nameAlg || digest),
    ``hash_alg``/``signing_alg`` Keylime's names for its scheme, ``created`` whether this run
    made it (False when it was reloaded from the data dir).
    """

    public: bytes
    name: bytes
    hash_alg: str
    signing_alg: str
    created: bool


class Tpm(Protocol):
    """What the agent asks of a TPM."""

    async def ek(self) -> EkInfo:
        """The EK: created from the TCG default template, or read from ``ek_handle``."""
        ...

    async def ek_certificate(self) -> bytes:
        """The DER EK certificate from NV; raises EkCertificateMissing if there is none."""
        ...

    async def ak(self) -> AkInfo:
        """The AK under the EK: reloaded from the data dir when it still fits, else created."""
        ...

    async def read_pcrs(self, hash_alg: str, pcrs: Iterable[int]) -> dict[int, bytes]:
        """The current values of ``pcrs`` in bank ``hash_alg`` (Keylime name, e.g. "sha256")."""
        ...

    async def bind_data_pcr(self, nk_public_pem: bytes) -> None:
        """Reset PCR 16 and extend it with H(nk_public_pem) in the configured bank."""
        ...

    async def bound_quote(
        self, nk_public_pem: bytes, nonce: bytes, mask: int, hash_alg: Optional[str] = None
    ) -> KeylimeQuote:
        """``bind_data_pcr`` then ``quote`` over ``mask`` plus PCR 16, as one operation: no
        other caller's TPM command runs in between (rust-keylime holds its TPM mutex across
        both), so the quoted PCR 16 is always bound to ``nk_public_pem``."""
        ...

    async def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        """TPM2_Quote with the AK over the PCRs in ``mask``, with the values that were quoted.

        ``mask`` is Keylime's (bit n = PCR n, n < 24); ``nonce`` at most 64 bytes (else
        ValueError).  ``hash_alg`` picks the PCR bank, by default the configured
        ``tpm_hash_alg``; Keylime verifiers require it to equal the AK's scheme hash.
        """
        ...

    async def activate_credential(self, blob: bytes) -> bytes:
        """TPM2_ActivateCredential of Keylime's 0xBADCC0DE blob with the AK and the EK."""
        ...

    async def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]:
        """TPM2_Certify of the AK by the AK over ``qualifying_data`` (at most 64 bytes):
        (TPMS_ATTEST, TPMT_SIGNATURE), the push model's proof of possession."""
        ...

    async def aclose(self) -> None:
        """Flush transient objects and close the TPM connection."""
        ...
