"""Certificates that other Keylime agents make, parsed as those agents' peers accept them.

rust-keylime 0.2.9 gives its self-signed mTLS certificate a serial number that is not
positive (RFC 5280 4.1.2.2 asks for a positive one).  cryptography still parses such a
certificate but raises a deprecation warning, which a process running with warnings as errors
turns into a failure.  Keylime's registrar and verifier accept the certificate, and a device
that moves from rust-keylime to limelet-agent keeps using it, so limelet parses it without
that one warning.  Every other warning still reaches the caller.
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["load_pem_certificate"]

# cryptography's warning text for a serial number below 1 (cryptography >= 39).
_NON_POSITIVE_SERIAL = "Parsed a serial number which wasn't positive"


def load_pem_certificate(pem: bytes) -> x509.Certificate:
    """One PEM certificate; ValueError when it is not one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NON_POSITIVE_SERIAL, CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificate(pem)
