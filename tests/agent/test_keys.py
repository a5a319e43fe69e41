"""The NK and the mTLS identity: created once, 0600, reloaded, remade when they must be."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from edge_agent.keys import (
    KeyMaterialError,
    load_or_create_nk,
    load_or_create_server_identity,
    nk_public_pem,
)
from edge_agent.keys.pem import store_private_key

AGENT = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nk_is_created_once_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "data" / "payload-private.pem"
    first = load_or_create_nk(path)
    assert first.key_size == 2048
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    again = load_or_create_nk(path)
    assert nk_public_pem(again) == nk_public_pem(first)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_nk_with_password_is_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "nk.pem"
    key = load_or_create_nk(path, "pw")
    assert b"ENCRYPTED" in path.read_bytes()
    assert nk_public_pem(load_or_create_nk(path, "pw")) == nk_public_pem(key)
    with pytest.raises(KeyMaterialError) as caught:
        load_or_create_nk(path, "wrong-password")
    assert "wrong-password" not in str(caught.value)
    with pytest.raises(KeyMaterialError, match="no password"):
        load_or_create_nk(path, "")


def test_nk_of_another_type_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "nk.pem"
    store_private_key(path, ec.generate_private_key(ec.SECP256R1()), "")
    before = path.read_bytes()
    with pytest.raises(KeyMaterialError, match="RSA-2048"):
        load_or_create_nk(path)
    assert path.read_bytes() == before


def sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def test_mtls_identity_contents(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "server-private.pem", tmp_path / "server-cert.crt"
    identity = load_or_create_server_identity(
        key_path, cert_path, agent_id=AGENT, contact_address="192.0.2.7"
    )
    assert isinstance(identity.key, ec.EllipticCurvePrivateKey)
    assert identity.key.curve.name == "secp256r1"
    cert = identity.cert
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == AGENT
    assert x509.IPAddress(ipaddress.ip_address("192.0.2.7")) in sans(cert)
    assert x509.DNSName("localhost") in sans(cert)
    assert mode(key_path) == 0o600
    assert mode(cert_path) == 0o600
    assert x509.load_pem_x509_certificate(identity.cert_pem.encode()) == cert


def test_mtls_dns_contact_address(tmp_path: Path) -> None:
    identity = load_or_create_server_identity(
        tmp_path / "k", tmp_path / "c", agent_id=AGENT, contact_address="agent.example.org"
    )
    assert x509.DNSName("agent.example.org") in sans(identity.cert)


def test_mtls_identity_is_kept_then_remade_when_id_or_address_change(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.crt"

    def load(agent_id: str, address: str) -> x509.Certificate:
        identity = load_or_create_server_identity(
            key_path, cert_path, agent_id=agent_id, contact_address=address
        )
        return identity.cert

    first = load(AGENT, "192.0.2.7")
    key_bytes = key_path.read_bytes()
    assert load(AGENT, "192.0.2.7") == first
    other_address = load(AGENT, "192.0.2.8")
    assert other_address != first
    other_id = load("another-agent", "192.0.2.8")
    assert other_id != other_address
    assert key_path.read_bytes() == key_bytes  # the key survives every change
    assert load("another-agent", "192.0.2.8") == other_id


def test_mtls_certificate_near_expiry_is_renewed(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.crt"
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=360)
    old = load_or_create_server_identity(
        key_path, cert_path, agent_id=AGENT, contact_address="127.0.0.1", now=long_ago
    )
    new = load_or_create_server_identity(
        key_path, cert_path, agent_id=AGENT, contact_address="127.0.0.1"
    )
    assert new.cert.not_valid_after_utc > old.cert.not_valid_after_utc


def test_existing_rsa_server_key_is_kept(tmp_path: Path) -> None:
    key_path = tmp_path / "k.pem"
    store_private_key(key_path, rsa.generate_private_key(65537, 2048), "")
    identity = load_or_create_server_identity(
        key_path, tmp_path / "c.crt", agent_id=AGENT, contact_address="127.0.0.1"
    )
    assert isinstance(identity.key, rsa.RSAPrivateKey)
