"""Does an EK certificate chain to a CA in the EK trust store?  Certificates in, verdict out.

Keylime's tenant checks the EK certificate against ``tpm_cert_store`` (keylime/tenant.py
``check_ek``, keylime/tpm/tpm_main.py ``verify_ek``); limelet's registrar checks at the door
and its tenant again before ``add``.  Both walk the same path: from the EK certificate, take an
issuer in the store whose subject is the certificate's issuer and whose key verifies its
signature, until a self-signed certificate of the store is reached.

Dates are the caller's choice: with ``now`` each certificate on the path must be valid then
(the registrar); without it dates are not checked, as Keylime does not (TPM vendors issue EK
certificates and intermediates whose dates do not track the device's life; the tenant).

:func:`parse_cert_store` takes the store files' contents and does no I/O.  The one exception
to the package's no-I/O rule is :func:`read_cert_store`, which lists and reads the store
directory (bounded by MAX_TRUST_FILE_BYTES a file) for both the registrar and the tenant: the
tenant may not import the service kit, and two copies of the same ten lines drifted once.
Errors::

    EkTrustError (ValueError)   base; ``reason`` says why, never certificate bytes
    ├── UntrustedChainError     no path from the certificate to a self-signed store CA
    └── TrustStoreError         the store directory is missing or holds no certificate
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest_protocol.errors import AttestProtocolError

if TYPE_CHECKING:
    # cryptography < 40 (Debian 12 ships 38) lacks this alias; it is only a type.
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "MAX_CHAIN_DEPTH",
    "MAX_TRUST_FILE_BYTES",
    "EkTrustError",
    "TrustStoreError",
    "UntrustedChainError",
    "chains_to_store",
    "check_chain",
    "parse_cert_store",
    "read_cert_store",
    "same_public_key",
    "spki_der",
]

# An EK chain is manufacturer root -> (one or two intermediates) -> EK; 8 is generous and
# stops a loop of cross-signed certificates.
MAX_CHAIN_DEPTH = 8
# Files in the trust store larger than this are not certificates someone meant to add.
MAX_TRUST_FILE_BYTES = 1024 * 1024
_PEM_MARK = b"-----BEGIN CERTIFICATE-----"


class EkTrustError(AttestProtocolError, ValueError):
    """Base of this module's errors (attest_protocol/errors.py draws the tree)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UntrustedChainError(EkTrustError):
    """The certificate does not chain to the store; ``issuer`` is its issuer (RFC 4514)."""

    def __init__(self, reason: str, issuer: str) -> None:
        super().__init__(f"{reason} (issuer {issuer})")
        self.reason = reason
        self.issuer = issuer


class TrustStoreError(EkTrustError):
    """``tpm_cert_store`` names no directory, or one without a usable certificate."""


def read_cert_store(directory: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate in ``directory`` (see :func:`parse_cert_store`); never empty."""
    if not directory.is_dir():
        raise TrustStoreError(f"{directory} is not a directory")
    files = {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if path.is_file() and path.stat().st_size <= MAX_TRUST_FILE_BYTES
    }
    certs = parse_cert_store(files)
    if not certs:
        raise TrustStoreError(f"no CA certificates found in {directory}")
    return certs


def parse_cert_store(files: Mapping[str, bytes]) -> tuple[x509.Certificate, ...]:
    """Every certificate in ``files`` (name -> contents), in name order.

    A file may hold several PEM certificates or one DER certificate.  Files that are neither
    (READMEs, keys, CRLs) or larger than MAX_TRUST_FILE_BYTES are skipped: they are not ours
    to trust.  The result may be empty; what that means is the caller's to say.
    """
    certs: list[x509.Certificate] = []
    for name in sorted(files):
        data = files[name]
        if len(data) > MAX_TRUST_FILE_BYTES:
            continue
        try:
            if _PEM_MARK in data:
                certs.extend(x509.load_pem_x509_certificates(data))
            else:
                certs.append(x509.load_der_x509_certificate(data))
        except ValueError:
            continue
    return tuple(certs)


def check_chain(
    cert: x509.Certificate,
    store: Sequence[x509.Certificate],
    now: Optional[datetime.datetime] = None,
) -> None:
    """UntrustedChainError unless a signature path leads from ``cert`` to a store root.

    With ``now`` (timezone-aware), every certificate on the path must be valid at ``now``.
    """
    issuer = cert.issuer.rfc4514_string()
    current = cert
    for _ in range(MAX_CHAIN_DEPTH):
        if now is not None and not _in_validity(current, now):
            raise UntrustedChainError(f"{_subject(current)} is not valid at {now}", issuer)
        parents = [c for c in store if c.subject == current.issuer and _issued_by(current, c)]
        if not parents:
            raise UntrustedChainError(f"no issuer of {_subject(current)} in the store", issuer)
        parent = parents[0]
        if parent.subject == parent.issuer and _issued_by(parent, parent):
            if now is not None and not _in_validity(parent, now):
                raise UntrustedChainError(f"{_subject(parent)} is not valid at {now}", issuer)
            return
        current = parent
    raise UntrustedChainError(f"no self-signed root within {MAX_CHAIN_DEPTH} links", issuer)


def chains_to_store(
    cert: x509.Certificate,
    store: Sequence[x509.Certificate],
    now: Optional[datetime.datetime] = None,
) -> bool:
    """:func:`check_chain` as a verdict."""
    try:
        check_chain(cert, store, now)
    except UntrustedChainError:
        return False
    return True


def spki_der(key: CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``: equal keys give equal octets."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Whether two public keys are the same key (e.g. ``ek_tpm``'s and the EK certificate's)."""
    return spki_der(a) == spki_der(b)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _in_validity(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"
