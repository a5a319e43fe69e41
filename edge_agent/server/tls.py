"""The agent API server's TLS: the files it is made from and the context built from them.

TLS as rust-keylime sets it up (keylime-agent/src/main.rs, ``crypto::generate_tls_context``):
the server presents the agent's mTLS certificate and key, and requires a client certificate
issued by ``trusted_client_ca`` (the verifier's and tenant's CA) and by nothing else: not by
OpenSSL's default trust store.  app.py names the files before the TPM is opened.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["ALPN_PROTOCOLS", "TlsFiles", "server_ssl_context"]

# Keylime's clients (tornado, requests) speak HTTP/1.1.
ALPN_PROTOCOLS = ["http/1.1"]
# Forward secrecy and AEAD only for TLS 1.2 (the suites Hypercorn offered); TLS 1.3's suites
# are all of that kind and are not affected by this string.
TLS12_CIPHERS = "ECDHE+AESGCM"


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key files and the CA that client certificates must chain to."""

    certfile: Path
    keyfile: Path
    client_cas: tuple[Path, ...]
    keyfile_password: Optional[str] = None


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server's context: its certificate and key, client certificates required from
    ``tls.client_cas`` (``trusted_client_ca`` is a list, base.rs).  Blocking: reads files."""
    # Purpose.CLIENT_AUTH leaves verification off, so no default CA is loaded here; the
    # configured CAs are the only trust anchors (tests/agent/test_http_server.py checks it).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    # Keylime's clients open a new connection per request and never resume a session, so
    # TLS 1.3 session tickets would be work and bytes for nothing.
    context.num_tickets = 0
    context.load_cert_chain(
        certfile=str(tls.certfile), keyfile=str(tls.keyfile), password=tls.keyfile_password
    )
    for ca in tls.client_cas:
        context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context
