"""Test certificates laid out like Keylime's ``cv_ca`` directory, shared by the service tests.

``make_tls_files`` writes a CA, a server pair for 127.0.0.1/localhost, a client pair (what the
tenant and the verifier present) and a client pair from another CA (the intruder).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from attest_protocol.pki import (
    CertificateAuthority,
    IssuedCert,
    create_ca,
    issue_client_cert,
    issue_server_cert,
)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TlsFiles:
    """Server and client certificates from one test CA, plus a client from a rogue CA."""

    directory: Path
    ca: CertificateAuthority

    @property
    def ca_cert(self) -> Path:
        return self.directory / "cacert.crt"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client-cert.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-private.pem"

    @property
    def rogue_cert(self) -> Path:
        return self.directory / "rogue-cert.crt"

    @property
    def rogue_key(self) -> Path:
        return self.directory / "rogue-private.pem"

    def client_context(self, *, rogue: bool = False, with_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_cert:
            cert, key = (
                (self.rogue_cert, self.rogue_key) if rogue else (self.client_cert, self.client_key)
            )
            ctx.load_cert_chain(str(cert), str(key))
        return ctx


def _write_pair(directory: Path, cert_name: str, key_name: str, issued: IssuedCert) -> None:
    (directory / cert_name).write_bytes(issued.cert_pem)
    (directory / key_name).write_bytes(issued.key_pem)


def make_tls_files(directory: Path, server_name: str = "limelet test server") -> TlsFiles:
    """Keylime's cv_ca file names, so ``tls_dir`` alone points a service at them."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca(f"{server_name} test CA")
    (directory / "cacert.crt").write_bytes(ca.cert_pem)
    server = issue_server_cert(ca, server_name, ips=[LOOPBACK], dns_names=["localhost"])
    _write_pair(directory, "server-cert.crt", "server-private.pem", server)
    _write_pair(directory, "client-cert.crt", "client-private.pem", issue_client_cert(ca, "tenant"))
    rogue = issue_client_cert(create_ca("someone else's CA"), "intruder")
    _write_pair(directory, "rogue-cert.crt", "rogue-private.pem", rogue)
    return TlsFiles(directory, ca)
