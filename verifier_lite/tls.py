"""``tls_dir = generate``: a CA, a server and a client certificate, made once and kept.

The layout is Keylime's ``cv_ca`` (keylime/web_util.py ``init_tls_dir`` and
keylime/ca_util.py): ``cacert.crt``, ``server-cert.crt`` + ``server-private.pem``,
``client-cert.crt`` + ``client-private.pem``.  The tenant and the registrar can be pointed at
the same directory.  Keys are written 0600 in a 0700 directory; an existing CA is never
replaced, so certificates already handed out stay valid across restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

from attest_protocol.pki import create_ca, issue_client_cert, issue_server_cert
from verifier_lite.config import VerifierConfig

CA_CERT_FILE = "cacert.crt"
CA_KEY_FILE = "ca-private.pem"
_DIR_MODE = 0o700
_KEY_MODE = 0o600
_CA_NAME = "limelet verifier CA"


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite what an earlier start made.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def ensure_tls_dir(config: VerifierConfig) -> bool:
    """Create the generated material when ``tls_dir = generate`` and it is absent.

    Returns True when files were created.  Does nothing for an operator-given directory.
    """
    if not config.generates_tls:
        return False
    directory = config.tls_path
    if (directory / CA_CERT_FILE).exists():
        return False
    directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    ca = create_ca(_CA_NAME)
    names = {config.ip, "127.0.0.1"}
    ips = [n for n in names if n.replace(".", "").isdigit() or ":" in n]
    server = issue_server_cert(ca, "verifier", ips=ips, dns_names=["localhost"])
    client = issue_client_cert(ca, "verifier-client")
    _write(directory / CA_KEY_FILE, ca.key_pem, _KEY_MODE)
    _write(config.server_key_path, server.key_pem, _KEY_MODE)
    _write(config.server_cert_path, server.cert_pem, 0o644)
    _write(config.client_key_path, client.key_pem, _KEY_MODE)
    _write(config.client_cert_path, client.cert_pem, 0o644)
    # The CA certificate last: its presence means the set is complete.
    _write(directory / CA_CERT_FILE, ca.cert_pem, 0o644)
    return True
