"""Who each simulated agent is: its id, address, AK, and the material agents share.

An agent's AK is derived from its index (an ECC P-256 key from a hash of the index), so the
parent process and each worker compute the same keys without passing them around, and a run
can be repeated with the same fleet.  Simplifications, stated because they matter to a
reader of the figures:

* one NK (RSA 2048) and one TLS certificate are shared by the whole fleet: generating 5,000
  RSA keys would take minutes and the verifier never compares them across agents (Keylime
  pins ``mtls_cert`` per agent, cloud_verifier_tornado ``get_agent_tls_context``; the NK is
  only bound into PCR 16 and used to encrypt V);
* the AK signs with ECDSA/SHA-256, the cheapest scheme Keylime accepts, so the simulator
  spends little CPU per quote.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from attest_protocol.tpm2.constants import EccCurve, TpmAlg
from attest_protocol.tpm2.public import SCHEME_NULL, SYM_NULL, TpmPublic

# Agents per /24: 127.0.<1 + i // 250>.<1 + i % 250>, leaving .0 and .255 alone.
AGENTS_PER_SUBNET = 250
AGENT_PORT = 9102
# fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
# restricted, sign -- the attributes tpm2_createak gives an AK (Part 2 §8.3).
AK_ATTRIBUTES = 0x00050072
_NAMESPACE = uuid.UUID("5f1c6a0e-7d1b-4c3e-9a57-0b6d2f8e4c11")
CERT_FILE = "agent-cert.pem"
KEY_FILE = "agent-key.pem"
NK_FILE = "nk.pem"
CERT_DAYS = 30


def agent_id(index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"fleet-agent-{index}"))


def agent_ip(index: int) -> str:
    return f"127.0.{1 + index // AGENTS_PER_SUBNET}.{1 + index % AGENTS_PER_SUBNET}"


def ak_private(index: int) -> ec.EllipticCurvePrivateKey:
    seed = int.from_bytes(hashlib.sha256(f"fleet-ak-{index}".encode()).digest(), "big")
    return ec.derive_private_key(seed % (2**255) + 1, ec.SECP256R1())


def ak_public(key: ec.EllipticCurvePrivateKey) -> TpmPublic:
    """The TPMT_PUBLIC a TPM reports for an ECC P-256 AK made by tpm2_createak."""
    point = key.public_key().public_numbers()
    xy = (point.x.to_bytes(32, "big"), point.y.to_bytes(32, "big"))
    return TpmPublic(
        TpmAlg.ECC, TpmAlg.SHA256, AK_ATTRIBUTES, b"", SYM_NULL, SCHEME_NULL,
        curve_id=EccCurve.NIST_P256, kdf=SCHEME_NULL, unique=xy,
    )  # fmt: skip


@dataclass(frozen=True)
class SharedMaterial:
    """The TLS certificate, its key and the NK all agents of a run use (see module doc)."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def nk(self) -> Path:
        return self.directory / NK_FILE

    def cert_pem(self) -> str:
        return self.cert.read_text(encoding="ascii")

    def nk_private(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.nk.read_bytes(), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"{self.nk} is not an RSA key")
        return key


def nk_public_pem(nk: rsa.RSAPrivateKey) -> str:
    return (
        nk.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def make_shared_material(directory: Path) -> SharedMaterial:
    """Write a self-signed agent certificate (as rust-keylime makes one), its key and an NK."""
    directory.mkdir(parents=True, exist_ok=True)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet-agent")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(san, critical=False)
        .sign(tls_key, hashes.SHA256())
    )
    material = SharedMaterial(directory)
    material.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    material.key.write_bytes(tls_key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    nk = rsa.generate_private_key(65537, 2048)
    material.nk.write_bytes(nk.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    return material
