"""Where the revocation certificate is and how it is read.

``revocation_cert = "default"`` means ``<keylime_dir>/secure/unzipped/RevocationNotifier-cert.crt``
(rust-keylime keylime/src/config/base.rs): the certificate the tenant's ``--cert`` package
carries (keylime/tenant.py adds ``RevocationNotifier-cert.crt`` to the zip).  A relative path
is relative to ``keylime_dir`` (the secure directory's parent), an absolute one is used as is.
The file appears only once a payload is delivered, so "not there yet" is None, not an error;
like rust-keylime the agent reloads it after each delivered payload.  Blocking (one small
read): from async code call ``load_revocation_cert`` in ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.revocation.errors import RevocationCertError

__all__ = [
    "DEFAULT_REVOCATION_CERT_NAME",
    "MAX_CERT_FILE_BYTES",
    "load_revocation_cert",
    "parse_revocation_cert",
    "revocation_cert_path",
]

DEFAULT_REVOCATION_CERT_NAME = "RevocationNotifier-cert.crt"
# The option value meaning "the default location" (as in every rust-keylime path option).
_DEFAULT_KEYWORD = "default"
_UNZIPPED = "unzipped"
# One PEM certificate is a few KiB.
MAX_CERT_FILE_BYTES = 64 * 1024


def revocation_cert_path(secure_dir: Path, revocation_cert_option: str) -> Path:
    """The certificate file the ``revocation_cert`` option names."""
    if revocation_cert_option in ("", _DEFAULT_KEYWORD):
        return secure_dir / _UNZIPPED / DEFAULT_REVOCATION_CERT_NAME
    path = Path(revocation_cert_option)
    return path if path.is_absolute() else secure_dir.parent / path


def load_revocation_cert(secure_dir: Path, revocation_cert_option: str) -> Optional[bytes]:
    """The certificate's PEM bytes, checked to hold an RSA key; None when the file is absent."""
    path = revocation_cert_path(secure_dir, revocation_cert_option)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CERT_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RevocationCertError(path, f"cannot read it: {exc.strerror}") from exc
    if len(data) > MAX_CERT_FILE_BYTES:
        raise RevocationCertError(path, f"larger than {MAX_CERT_FILE_BYTES} bytes")
    try:
        parse_revocation_cert(data)
    except RevocationCertError as exc:
        raise RevocationCertError(path, exc.reason) from exc
    return data


def parse_revocation_cert(cert_pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM certificate (Keylime's ca_util makes RSA certificates)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise RevocationCertError(Path("<revocation cert>"), "not a PEM certificate") from exc
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise RevocationCertError(
            Path("<revocation cert>"), f"holds a {type(key).__name__}, not an RSA key"
        )
    return key
