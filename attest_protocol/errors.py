"""The exception tree shared by every limelet component.

::

    AttestProtocolError                 http_status 400 unless a subclass says otherwise
    ├── ParseError                      bad bytes or text: names the structure and the offset
    │   ├── ImaParseError               an IMA log line (ima/errors.py), with its line number
    │   └── EventLogParseError          the UEFI event log (eventlog/errors.py)
    ├── ApiVersionError                 a /vX.Y prefix we do not serve
    ├── CredentialError                 MakeCredential input that cannot be used (EK type, name)
    ├── AlgorithmError                  unknown algorithm id or Keylime name (also a ValueError)
    ├── AttestationKeyError             a public area that may not serve as an AK (CVE-2021-3406)
    ├── QuoteVerificationError          evidence that parsed but does not hold
    │   ├── QuoteSignatureError         signature does not verify under the AK
    │   ├── QuoteNonceError             extraData is not the nonce we sent
    │   ├── QuotePcrDigestError         hash of the sent PCR values is not pcrDigest
    │   ├── QuoteSelectionError         PCR blob selection differs from the quoted one
    │   ├── QuoteClockError             TPM clock went backwards, or reset without a restart
    │   └── QuoteAlgorithmError         hash/sign algorithm not accepted, or inconsistent
    ├── ImaVerificationError            template hash or PCR index wrong (ima/errors.py)
    ├── EventLogReplayError             the boot log does not replay to the quoted PCRs
    ├── RuntimePolicyError              a Keylime runtime policy we cannot use (policy/errors.py)
    ├── MbPolicyError                   a measured-boot policy or reference state (mb/errors.py)
    │   ├── RefstateError               the reference state does not suit the policy
    │   └── UnknownMbPolicyError        no policy of that name
    ├── PkiError                        CA or certificate material that cannot be made or read
    │
    │   also ValueError, as their callers catch them so:
    ├── FieldError                      an IMA field value (ima/fields.py)
    ├── UnsupportedKeyError             a policy key neither RSA nor EC (policy/keys.py)
    ├── EkTrustError                    EK certificate chain checks (ek_trust.py)
    │   ├── UntrustedChainError
    │   └── TrustStoreError             the trust store directory is missing or empty
    ├── BootstrapCryptoError            K/U/V and payloads (bootstrap_keys.py)
    │   ├── KeyLengthError, KeyShareError, PayloadFormatError, PayloadAuthError
    │   └── NkKeyError                  the agent's NK public key cannot encrypt a share
    └── SettingsError (500)             a component's own configuration (settings.py)

The services' handlers (service_kit/web.py) answer each with its ``http_status``; a 5xx is
logged and answered without details.

Errors carry fields, not only text, so callers can log and count them.  Messages describe
what was wrong with the input and never echo key material or expected secrets
(CVE-2023-38201: a registrar once returned the expected HMAC in its error).
"""

from __future__ import annotations


class AttestProtocolError(Exception):
    """Base of everything raised by attest_protocol.  ``http_status`` is what a server returns."""

    http_status: int = 400


class ParseError(AttestProtocolError):
    """Input bytes (or text) do not form the named structure.

    ``structure`` names what was being decoded (e.g. ``"TPMS_ATTEST"``), ``offset`` the byte
    (or character) position where decoding failed, ``reason`` what was wrong there.
    """

    def __init__(self, structure: str, offset: int, reason: str) -> None:
        super().__init__(f"{structure}: {reason} at offset {offset}")
        self.structure = structure
        self.offset = offset
        self.reason = reason


class ApiVersionError(AttestProtocolError):
    """A request named an API version this component does not serve."""

    def __init__(self, version: str) -> None:
        # The status text is what real Keylime answers, so tenants recognise it.
        super().__init__(f"API version not supported: v{version}")
        self.version = version


class CredentialError(AttestProtocolError):
    """MakeCredential cannot be performed for the given EK or object name."""


class AlgorithmError(AttestProtocolError, ValueError):
    """An algorithm identifier or name that is unknown or not usable where it was given."""


class AttestationKeyError(AttestProtocolError):
    """A public area that cannot serve as an attestation key; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a usable attestation key: {reason}")
        self.reason = reason


class QuoteVerificationError(AttestProtocolError):
    """The quote parsed but does not prove what it claims."""


class QuoteSignatureError(QuoteVerificationError):
    """The TPMT_SIGNATURE does not verify over TPMS_ATTEST with the AK public key."""


class QuoteNonceError(QuoteVerificationError):
    """TPMS_ATTEST.extraData is not the nonce the verifier sent."""


class QuotePcrDigestError(QuoteVerificationError):
    """The digest of the PCR values sent beside the quote is not TPMS_ATTEST's pcrDigest."""


class QuoteSelectionError(QuoteVerificationError):
    """The PCR selection in the PCR blob is not the selection the TPM quoted."""


class QuoteClockError(QuoteVerificationError):
    """The TPM clock moved backwards against an earlier quote from the same boot."""


class QuoteAlgorithmError(QuoteVerificationError):
    """The quote uses a hash or signature algorithm the verifier does not accept."""
