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
from typing import Optional

from cryptography import x509

from attest_protocol.ek_trust import (
    TrustStoreError,
    chains_to_store,
    read_cert_store,
    same_public_key,
)
from attest_protocol.tpm2.public import (
    AttestationKeyError,
    TpmPublic,
    check_attestation_key,
    parse_tpm2b_public,
)
from registrar_lite.errors import ConfigError, UntrustedIdentityError
from registrar_lite.validation import Registration, load_cert


def load_trust_store(directory: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate (PEM, possibly several per file, or DER) in ``directory``."""
    try:
        return read_cert_store(directory)
    except TrustStoreError as exc:
        raise ConfigError("tpm_cert_store", exc.reason) from exc


def _check_key_matches(tpm_field: str, tpm: bytes, cert_field: str, der: bytes) -> None:
    public = parse_tpm2b_public(tpm).public_key()
    if not same_public_key(public, load_cert(cert_field, der).public_key()):
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
