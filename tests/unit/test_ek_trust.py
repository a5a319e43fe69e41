"""attest_protocol.ek_trust: the EK chain walk, the store parser and the key comparison."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attest_protocol.ek_trust import (
    MAX_CHAIN_DEPTH,
    MAX_TRUST_FILE_BYTES,
    TrustStoreError,
    UntrustedChainError,
    chains_to_store,
    check_chain,
    parse_cert_store,
    read_cert_store,
    same_public_key,
    spki_der,
)

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
# A P-256 SubjectPublicKeyInfo: 26 octets of header and algorithm, 65 of uncompressed point.
P256_SPKI_BYTES = 91


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str,
    issuer: Issued | None = None,
    *,
    start: datetime.datetime = NOW - DAY,
    end: datetime.datetime = NOW + DAY,
) -> Issued:
    """A certificate for a fresh key, signed by ``issuer`` (self-signed when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = key if issuer is None else issuer.key
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn) if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(signer, hashes.SHA256())
    )
    return Issued(cert, key)


ROOT = issue("root")
INTER = issue("intermediate", ROOT)
EK = issue("ek", INTER)
OTHER_ROOT = issue("root")  # same subject as ROOT, different key
OLD_ROOT = issue("old root", start=NOW - 10 * DAY, end=NOW - 5 * DAY)
EK_UNDER_OLD = issue("ek2", OLD_ROOT)
EXPIRED_EK = issue("ek3", INTER, start=NOW - 10 * DAY, end=NOW - 5 * DAY)


def _pem(*issued: Issued) -> bytes:
    return b"".join(i.cert.public_bytes(serialization.Encoding.PEM) for i in issued)


# (id, certificate, store, now, verdict, reason fragment when refused)
CHAINS: list[tuple[str, Issued, tuple[Issued, ...], datetime.datetime | None, bool, str]] = [
    ("root-and-intermediate", EK, (ROOT, INTER), NOW, True, ""),
    ("store-order-irrelevant", EK, (INTER, ROOT), None, True, ""),
    ("direct-child-of-root", INTER, (ROOT,), NOW, True, ""),
    ("missing-intermediate", EK, (ROOT,), None, False, "no issuer of CN=ek"),
    ("empty-store", EK, (), None, False, "no issuer"),
    ("impostor-root", EK, (OTHER_ROOT, INTER), None, False, "no issuer of CN=intermediate"),
    ("intermediate-is-not-a-root", EK, (INTER,), None, False, "no issuer of CN=intermediate"),
    ("expired-root-with-dates", EK_UNDER_OLD, (OLD_ROOT,), NOW, False, "CN=old root"),
    ("expired-root-without-dates", EK_UNDER_OLD, (OLD_ROOT,), None, True, ""),
    ("expired-ek-with-dates", EXPIRED_EK, (ROOT, INTER), NOW, False, "CN=ek3 is not valid"),
    ("expired-ek-without-dates", EXPIRED_EK, (ROOT, INTER), None, True, ""),
]


@pytest.mark.parametrize(
    ("cert", "store", "now", "verdict", "reason"),
    [case[1:] for case in CHAINS],
    ids=[case[0] for case in CHAINS],
)
def test_chain_table(
    cert: Issued,
    store: tuple[Issued, ...],
    now: datetime.datetime | None,
    verdict: bool,
    reason: str,
) -> None:
    certs = [i.cert for i in store]
    assert chains_to_store(cert.cert, certs, now) is verdict
    if verdict:
        check_chain(cert.cert, certs, now)
        return
    with pytest.raises(UntrustedChainError, match=reason) as caught:
        check_chain(cert.cert, certs, now)
    assert caught.value.issuer == cert.cert.issuer.rfc4514_string()
    assert isinstance(caught.value, ValueError)


def test_chain_longer_than_the_limit_is_refused() -> None:
    chain = [ROOT]
    for depth in range(MAX_CHAIN_DEPTH + 1):
        chain.append(issue(f"level {depth}", chain[-1]))
    store = [i.cert for i in chain[:-1]]
    with pytest.raises(UntrustedChainError, match=f"within {MAX_CHAIN_DEPTH} links"):
        check_chain(chain[-1].cert, store)
    assert chains_to_store(chain[MAX_CHAIN_DEPTH - 1].cert, store)


def test_parse_cert_store_reads_pem_bundles_and_der_in_name_order() -> None:
    files = {
        "b-bundle.pem": _pem(INTER, EK),
        "a-root.der": ROOT.cert.public_bytes(serialization.Encoding.DER),
    }
    assert parse_cert_store(files) == (ROOT.cert, INTER.cert, EK.cert)


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"README": b"the EK CAs go here\n"},
        {"key.pem": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
        {"broken.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"},
        {"empty": b""},
        {"huge.pem": _pem(ROOT) + b"\n" * MAX_TRUST_FILE_BYTES},
    ],
    ids=["no-files", "readme", "private-key", "broken-pem", "empty-file", "too-large"],
)
def test_parse_cert_store_skips_what_is_not_a_certificate(files: dict[str, bytes]) -> None:
    assert parse_cert_store({**files, "z-root.pem": _pem(ROOT)}) == (ROOT.cert,)
    assert parse_cert_store(files) == ()


def test_read_cert_store_reads_the_directory_skipping_large_files(tmp_path: Path) -> None:
    (tmp_path / "a-root.pem").write_bytes(_pem(ROOT))
    (tmp_path / "b-huge.pem").write_bytes(_pem(INTER) + b"\n" * MAX_TRUST_FILE_BYTES)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.pem").write_bytes(_pem(EK))
    assert read_cert_store(tmp_path) == (ROOT.cert,)


def test_read_cert_store_refuses_a_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match="is not a directory"):
        read_cert_store(tmp_path / "absent")
    (tmp_path / "README").write_text("the EK CAs go here\n")
    with pytest.raises(TrustStoreError, match="no CA certificates found"):
        read_cert_store(tmp_path)


def test_same_public_key() -> None:
    assert same_public_key(EK.cert.public_key(), EK.key.public_key())
    assert not same_public_key(EK.cert.public_key(), INTER.key.public_key())
    der = spki_der(EK.key.public_key())
    assert der == EK.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert len(der) == P256_SPKI_BYTES
