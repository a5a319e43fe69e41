"""agent_data.json as rust-keylime 0.2.9 writes it (keylime/src/agent_data.rs), without a TPM."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.tpm import agent_data, ak_store
from edge_agent.tpm.ak_store import StoredAk
from edge_agent.tpm.errors import AkMismatch
from registrar_lite.ek_template import ek_public_from_key
from tests.registrar.support import ak_public

EK_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EK_PUBLIC = ek_public_from_key(EK_KEY.public_key()).to_tpm2b()
AK_PUBLIC = ak_public()  # an ECC P-256 ECDSA AK, TPM2B_PUBLIC
AK_PRIVATE = b"\x00\x04wrap"  # TPM2B_PRIVATE: size 4, then the wrapped blob


def _want(
    *,
    encryption_alg: str = "ecc",
    hash_alg: str = "sha256",
    signing_alg: str = "ecdsa",
    ek_sha256: str = "",
) -> StoredAk:
    ek = ek_sha256 or agent_data.ek_hash(EK_PUBLIC)
    return StoredAk(b"", b"", encryption_alg, hash_alg, signing_alg, ek)


def _stored() -> StoredAk:
    return dataclasses.replace(_want(), public=AK_PUBLIC, private=AK_PRIVATE)


def test_ek_hash_is_rust_keylimes_hash_of_the_pem() -> None:
    pem = EK_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert agent_data.ek_hash(EK_PUBLIC) == hashlib.sha256(pem).hexdigest()


def test_written_as_rust_keylime_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "agent_data.json"
    agent_data.save(path, _stored())
    doc = json.loads(path.read_text())
    assert list(doc) == ["ak_hash_alg", "ak_sign_alg", "ak_public", "ak_private", "ek_hash"]
    assert doc["ak_hash_alg"] == "Sha256"
    assert doc["ak_sign_alg"] == "EcDsa"
    assert bytes(doc["ak_public"]) == AK_PUBLIC[2:]  # TPMT_PUBLIC, no size prefix
    assert bytes(doc["ak_private"]) == b"wrap"
    assert bytes(doc["ek_hash"]).decode() == agent_data.ek_hash(EK_PUBLIC)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=None)
    assert loaded == _stored()


@pytest.mark.parametrize(
    ("want", "named"),
    [
        (_want(hash_alg="sha384"), "tpm_hash_alg"),
        (_want(signing_alg="rsassa"), "tpm_signing_alg"),
        (_want(encryption_alg="rsa"), "tpm_encryption_alg"),
        (_want(ek_sha256="0" * 64), "different EK"),
    ],
)
def test_not_reused_when_configuration_or_ek_differs(
    tmp_path: Path, want: StoredAk, named: str
) -> None:
    path = tmp_path / "agent_data.json"
    agent_data.save(path, _stored())
    with pytest.raises(AkMismatch, match=named):
        agent_data.load(path, want=want, ek_public=EK_PUBLIC, legacy=None)


@pytest.mark.parametrize(
    "content",
    [b"", b"[]", b'{"ak_hash_alg": "Sha256"}', b'{"ak_public": [256]}', b"x" * 70000],
)
def test_malformed_file_is_a_mismatch(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "agent_data.json"
    path.write_bytes(content)
    with pytest.raises(AkMismatch):
        agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=None)


def test_unknown_algorithm_name_is_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "agent_data.json"
    agent_data.save(path, _stored())
    doc = json.loads(path.read_text())
    doc["ak_hash_alg"] = "Md5"
    path.write_text(json.dumps(doc))
    with pytest.raises(AkMismatch, match="malformed"):
        agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=None)


def test_earlier_release_file_is_carried_over_once(tmp_path: Path) -> None:
    legacy = tmp_path / "limelet_ak.json"
    old = dataclasses.replace(_stored(), ek_sha256=ak_store.ek_fingerprint(EK_PUBLIC))
    ak_store.save(legacy, old)
    path = tmp_path / "agent_data.json"
    loaded = agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=legacy)
    assert loaded == _stored()
    assert not legacy.exists()
    assert agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=legacy) == _stored()


def test_earlier_release_file_under_another_ek_is_not_carried_over(tmp_path: Path) -> None:
    legacy = tmp_path / "limelet_ak.json"
    ak_store.save(legacy, dataclasses.replace(_stored(), ek_sha256="0" * 64))
    path = tmp_path / "agent_data.json"
    with pytest.raises(AkMismatch, match="different EK"):
        agent_data.load(path, want=_want(), ek_public=EK_PUBLIC, legacy=legacy)
    assert not path.exists()
