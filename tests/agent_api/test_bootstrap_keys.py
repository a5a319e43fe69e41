"""The U/V/K state machine (edge_agent.bootstrap_keys), one test per transition, no TPM."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.bootstrap_keys import (
    MAX_STORED_HALVES,
    BootstrapKeys,
    KeyAlreadyDerived,
    KeyHalfError,
    KeyNotDerived,
    UHalf,
    VHalf,
    decrypt_half,
)
from edge_agent.keys import nk_public_pem
from tests.agent_api.support import KeyHalves, encrypt_half, new_halves

AGENT_ID = "agent-under-test"


def u_of(halves: KeyHalves, payload: bytes | None = None) -> UHalf:
    return UHalf(halves.u, bytes.fromhex(halves.auth_tag(AGENT_ID)), payload)


def test_collecting_u_then_v_derives_k_with_the_payload() -> None:
    halves, keys = new_halves(), BootstrapKeys(AGENT_ID)
    assert keys.add_u(u_of(halves, b"payload")) is None
    derived = keys.add_v(VHalf(halves.v))
    assert derived is not None
    assert (derived.key, derived.payload) == (halves.k, b"payload")
    assert keys.derived


def test_collecting_v_then_u_derives_k() -> None:
    halves, keys = new_halves(), BootstrapKeys(AGENT_ID)
    assert keys.add_v(VHalf(halves.v)) is None
    derived = keys.add_u(u_of(halves))
    assert derived is not None and derived.key == halves.k and derived.payload is None


def test_every_stored_pair_is_tried() -> None:
    """U halves whose V never comes, V halves whose U never comes, then the right V."""
    good = new_halves()
    keys = BootstrapKeys(AGENT_ID)
    assert keys.add_u(u_of(new_halves(), b"stray")) is None
    assert keys.add_u(u_of(good, b"good")) is None
    assert keys.add_u(u_of(new_halves(), b"stray")) is None
    for _ in range(3):
        assert keys.add_v(VHalf(new_halves().v)) is None
    assert not keys.derived
    derived = keys.add_v(VHalf(good.v))
    assert derived is not None
    assert (derived.key, derived.payload) == (good.k, b"good")


def test_an_agent_id_other_than_the_tags_never_derives() -> None:
    halves = new_halves()
    keys = BootstrapKeys("another-agent")
    keys.add_u(u_of(halves))
    assert keys.add_v(VHalf(halves.v)) is None
    with pytest.raises(KeyNotDerived):
        keys.challenge_hmac(b"challenge")


def test_derived_refuses_u_and_ignores_v() -> None:
    first, second = new_halves(), new_halves()
    keys = BootstrapKeys(AGENT_ID)
    keys.add_u(u_of(first))
    keys.add_v(VHalf(first.v))
    with pytest.raises(KeyAlreadyDerived):
        keys.add_u(u_of(second))
    assert keys.add_v(VHalf(second.v)) is None
    expected = hmac.new(first.k, b"c", hashlib.sha384).hexdigest()
    assert keys.challenge_hmac(b"c") == expected


def test_stored_halves_are_bounded_oldest_first() -> None:
    wanted = new_halves()
    keys = BootstrapKeys(AGENT_ID)
    keys.add_u(u_of(wanted))
    for _ in range(MAX_STORED_HALVES):
        keys.add_u(u_of(new_halves()))
    # The wanted U was pushed out by MAX_STORED_HALVES newer ones.
    assert keys.add_v(VHalf(wanted.v)) is None


def test_repr_never_shows_key_material() -> None:
    halves = new_halves()
    for value in (u_of(halves), VHalf(halves.v)):
        assert halves.u.hex() not in repr(value) and halves.v.hex() not in repr(value)


@pytest.fixture(scope="module")
def nk() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def test_decrypt_half_round_trip_and_refusals(nk: rsa.RSAPrivateKey) -> None:
    pem = nk_public_pem(nk).decode()
    half = bytes(range(32))
    assert decrypt_half(nk, base64.b64decode(encrypt_half(pem, half))) == half
    with pytest.raises(KeyHalfError, match="32 bytes"):
        decrypt_half(nk, base64.b64decode(encrypt_half(pem, half[:16])))
    with pytest.raises(KeyHalfError, match="does not decrypt"):
        decrypt_half(nk, b"\x00" * 256)
