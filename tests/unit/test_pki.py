"""attest_protocol.pki: the CA and the certificates it issues pass strict OpenSSL checks.

The decisive test is a real TLS handshake (stdlib ssl over memory BIOs) with
``VERIFY_X509_STRICT`` on both sides, which is what OpenSSL 3.2+ clients (and Python 3.13's
default context) apply: it fails on a CA without a Subject Key Identifier, or a leaf without
an Authority Key Identifier.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from attest_protocol.pki import (
    CertificateAuthority,
    IssuedCert,
    PkiError,
    create_ca,
    issue_client_cert,
    issue_server_cert,
)

HANDSHAKE_ROUNDS = 10


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("limelet test CA")


def _write(tmp_path: Path, name: str, issued: IssuedCert) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    return str(cert), str(key)


def _handshake(client: ssl.SSLObject, server: ssl.SSLObject, bios: list[ssl.MemoryBIO]) -> None:
    c_in, c_out, s_in, s_out = bios
    done = {"client": False, "server": False}
    for _ in range(HANDSHAKE_ROUNDS):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_ca_extensions(ca: CertificateAuthority) -> None:
    cert = ca.certificate()
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.issuer == cert.subject


def test_server_cert_extensions(ca: CertificateAuthority) -> None:
    cert = issue_server_cert(ca, "registrar", ips=["127.0.0.1", "::1"], dns_names=["localhost"])
    parsed = cert.certificate()
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate().extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest
    parsed.verify_directly_issued_by(ca.certificate())


def test_client_cert_usage(ca: CertificateAuthority) -> None:
    parsed = issue_client_cert(ca, "tenant").certificate()
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    parsed.verify_directly_issued_by(ca.certificate())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"ips": ["not-an-ip"]}, "not an IP address"),
        ({"dns_names": [""]}, "not a DNS name"),
        ({}, "at least one"),
        ({"ips": ["127.0.0.1"], "lifetime_days": 0}, "positive"),
    ],
)
def test_bad_requests_are_refused(
    ca: CertificateAuthority, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(PkiError, match=needle):
        issue_server_cert(ca, "x", **kwargs)  # type: ignore[arg-type]


def test_strict_mutual_tls_handshake(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(
        *_write(tmp_path, "server", issue_server_cert(ca, "s", ips=["127.0.0.1"]))
    )
    server_ctx.load_verify_locations(str(ca_file))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    client_ctx.load_cert_chain(*_write(tmp_path, "client", issue_client_cert(ca, "c")))
    for ctx in (server_ctx, client_ctx):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    _handshake(client, server, bios)
    peer = server.getpeercert()
    assert peer is not None
    assert (("commonName", "c"),) in peer["subject"]


def test_a_certificate_with_a_serial_below_one_parses_without_a_warning() -> None:
    """rust-keylime 0.2.9's self-signed mTLS certificate has such a serial; peers accept it."""
    import datetime
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from attest_protocol.certificates import load_pem_certificate

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    # CertificateBuilder refuses a serial below 1, so write 1 and patch the DER's INTEGER to 0.
    der = (
        builder.serial_number(1).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    )
    marker = bytes.fromhex("a003020102020101")  # version [0] v3, then serialNumber INTEGER 1
    assert der.count(marker) == 1
    der = der.replace(marker, bytes.fromhex("a003020102020100"))
    import base64

    body = base64.encodebytes(der).decode("ascii")
    pem_bytes = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = load_pem_certificate(pem_bytes)
    assert cert.subject == name
    assert cert.public_bytes(serialization.Encoding.DER) == der
