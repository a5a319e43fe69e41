"""Trust decisions about a registration: EK certificate chain, EK/certificate match, the AK.

* The EK certificate must chain to a CA certificate in ``tpm_cert_store`` when one is
  configured (Keylime leaves this to the tenant, ``keylime/tenant.py`` ``check_ek``; limelet
  checks at the door, so an unverifiable TPM never gets a challenge).  With a store, an
  ``ekcert`` is required: a trust store one can bypass by omitting the certificate is none.
* The certificate's public key must be ``ek_tpm``'s (registrar_agent.py
  ``_check_key_against_cert``), and likewise for IAK/IDevID pairs.
* The AK must be a TPM-bound restricted signing key (CVE-2021-3406;
  ``attest_protocol.tpm2.public.check_attestation_key``).  Its Name is computed here from
  ``aik_tpm``, never taken from the agent.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest_protocol.tpm2.public import (
    AttestationKeyError,
    TpmPublic,
    check_attestation_key,
    parse_tpm2b_public,
)
from registrar_lite.errors import ConfigError, UntrustedIdentityError
from registrar_lite.validation import Registration, load_cert

if TYPE_CHECKING:
    # cryptography < 40 (Debian 12 ships 38) lacks this alias; it is only a type.
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

# An EK chain is manufacturer root -> (one or two intermediates) -> EK; 8 is generous and
# stops a loop of cross-signed certificates.
MAX_CHAIN_DEPTH = 8
# Files in the trust store larger than this are not certificates someone meant to add.
MAX_TRUST_FILE_BYTES = 1024 * 1024
_PEM_MARK = b"-----BEGIN CERTIFICATE-----"


def load_trust_store(directory: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate (PEM, possibly several per file, or DER) in ``directory``."""
    if not directory.is_dir():
        raise ConfigError("tpm_cert_store", f"{directory} is not a directory")
    certs: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.stat().st_size > MAX_TRUST_FILE_BYTES:
            continue
        data = path.read_bytes()
        try:
            if _PEM_MARK in data:
                certs.extend(x509.load_pem_x509_certificates(data))
            else:
                certs.append(x509.load_der_x509_certificate(data))
        except ValueError:
            continue  # READMEs, keys, CRLs: not ours to trust
    if not certs:
        raise ConfigError("tpm_cert_store", f"no CA certificates found in {directory}")
    return tuple(certs)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _in_validity(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def chains_to_store(
    cert: x509.Certificate, store: Sequence[x509.Certificate], now: datetime.datetime
) -> bool:
    """True when a signature path leads from ``cert`` to a self-signed certificate in ``store``."""
    current = cert
    for _ in range(MAX_CHAIN_DEPTH):
        if not _in_validity(current, now):
            return False
        parents = [c for c in store if c.subject == current.issuer and _issued_by(current, c)]
        if not parents:
            return False
        parent = parents[0]
        if parent.subject == parent.issuer and _issued_by(parent, parent):
            return _in_validity(parent, now)
        current = parent
    return False


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_key_matches(tpm_field: str, tpm: bytes, cert_field: str, der: bytes) -> None:
    public = parse_tpm2b_public(tpm).public_key()
    if _spki(public) != _spki(load_cert(cert_field, der).public_key()):
        raise UntrustedIdentityError(tpm_field, f"must contain the same public key as {cert_field}")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def check_identity(reg: Registration, store: Optional[Sequence[x509.Certificate]]) -> TpmPublic:
    """Run every check; returns the parsed EK for MakeCredential.  UntrustedIdentityError else."""
    if store is not None:
        if reg.ekcert is None:
            raise UntrustedIdentityError("ekcert", "is required when tpm_cert_store is configured")
        if not chains_to_store(load_cert("ekcert", reg.ekcert), store, _now()):
            raise UntrustedIdentityError(
                "ekcert", "must contain a certificate issued by a CA present in the trust store"
            )
    if reg.ekcert is not None:
        _check_key_matches("ek_tpm", reg.ek_tpm, "ekcert", reg.ekcert)
    for key_field, cert_field in (("iak_tpm", "iak_cert"), ("idevid_tpm", "idevid_cert")):
        key, cert = getattr(reg, key_field), getattr(reg, cert_field)
        if key is not None and cert is not None:
            _check_key_matches(key_field, key, cert_field, cert)
    try:
        check_attestation_key(parse_tpm2b_public(reg.aik_tpm))
    except AttestationKeyError as exc:
        raise UntrustedIdentityError("aik_tpm", exc.reason) from None
    return parse_tpm2b_public(reg.ek_tpm)


def ak_name(reg: Registration) -> bytes:
    """The AK's TPM Name, computed from its public area (Part 1 §16)."""
    return parse_tpm2b_public(reg.aik_tpm).name()
