"""The uuid option's modes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.config import OptionValueError, resolve_agent_id
from edge_agent.config.agent_id import check_uuid_option

PEM = b"-----BEGIN PUBLIC KEY-----\nnot parsed here\n-----END PUBLIC KEY-----\n"


def test_literal_uuid_is_normalised() -> None:
    literal = "D432FBB3-D2F1-4A97-9EF7-75BD81C00000"
    assert resolve_agent_id(literal, PEM) == literal.lower()


def test_literal_agent_id_that_is_not_a_uuid_is_kept() -> None:
    assert resolve_agent_id("edge-node_7.lab", PEM) == "edge-node_7.lab"


def test_generate_gives_a_new_uuid4_each_time() -> None:
    first, second = resolve_agent_id("generate", PEM), resolve_agent_id("generate", PEM)
    assert first != second
    assert uuid.UUID(first).version == 4


def test_hash_ek_is_sha256_of_the_spki_pem(soft_keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    pem = (
        soft_keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert resolve_agent_id("hash_ek", pem) == hashlib.sha256(pem).hexdigest()


def test_hostname_uses_the_fqdn() -> None:
    assert resolve_agent_id("hostname", PEM, getfqdn=lambda: "node1.example.org") == (
        "node1.example.org"
    )


def test_environment_mode_without_the_variable_is_an_error() -> None:
    # Set, KEYLIME_AGENT_UUID replaces the option before it gets here.
    with pytest.raises(OptionValueError, match="KEYLIME_AGENT_UUID"):
        resolve_agent_id("environment", PEM)


def test_dmidecode_reads_the_smbios_uuid(tmp_path: Path) -> None:
    dmi = tmp_path / "product_uuid"
    dmi.write_text("4C4C4544-0042-3510-8057-B4C04F4B4D32\n")
    assert resolve_agent_id("dmidecode", PEM, dmi_path=dmi) == (
        "4c4c4544-0042-3510-8057-b4c04f4b4d32"
    )
    with pytest.raises(OptionValueError, match="cannot read"):
        resolve_agent_id("dmidecode", PEM, dmi_path=tmp_path / "missing")


@pytest.mark.parametrize("bad", ["", "white space", "x" * 81, "semi;colon", "slash/id", "ünïcode"])
def test_invalid_literals_are_refused(bad: str) -> None:
    with pytest.raises(OptionValueError) as caught:
        check_uuid_option(bad, "agent.conf")
    assert caught.value.option == "uuid"
