"""The tenant's K/U/V, payload encryption, auth tag and U encryption, checked by Keylime's own
code (keylime/crypto.py) running in its virtualenv: what we make, Keylime's agent side opens.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.bootstrap_keys import (
    decrypt_payload,
    encrypt_payload,
    encrypt_to_nk,
    split_key,
    xor,
)
from attest_protocol.bootstrap_keys import hmac_sha384_hex as hmac_hex
from tools.keylime_services import run_in_keylime

_SNIPPET = """
import base64
from keylime import crypto
k = base64.b64decode(payload["k"])
priv = crypto.rsa_import_privkey(payload["nk_private"])
u = crypto.rsa_decrypt(priv, base64.b64decode(payload["encrypted_u"]))
v = base64.b64decode(payload["v"])
result = {
    "k_ok": crypto.strbitxor(u, v) == k,
    "plaintext": crypto.decrypt(payload["ciphertext"].encode(), k).decode(),
    "auth_tag": crypto.do_hmac(k, payload["agent_id"]),
    "theirs": crypto.encrypt(b"from keylime", k).decode(),
}
"""


def test_split_key_recombines() -> None:
    key = split_key()
    assert len(key.k) == len(key.u) == len(key.v) == 32
    assert xor(key.u, key.v) == key.k
    assert key.k.hex() not in repr(key)


def test_payload_round_trip_and_tamper() -> None:
    key = split_key()
    sealed = encrypt_payload(key.k, b"secret payload")
    assert decrypt_payload(key.k, sealed) == b"secret payload"
    raw = bytearray(base64.b64decode(sealed))
    raw[-1] ^= 1
    with pytest.raises(ValueError):
        decrypt_payload(key.k, base64.b64encode(bytes(raw)))


@pytest.mark.interop
def test_keylime_opens_what_the_tenant_seals(keylime_venv: object) -> None:
    nk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nk_public = nk.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    nk_private = nk.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = split_key()
    got = run_in_keylime(
        _SNIPPET,
        {
            "k": base64.b64encode(key.k).decode(),
            "v": base64.b64encode(key.v).decode(),
            "nk_private": nk_private.decode(),
            "encrypted_u": base64.b64encode(encrypt_to_nk(nk_public.decode(), key.u)).decode(),
            "ciphertext": encrypt_payload(key.k, b"hello agent").decode(),
            "agent_id": "agent-1",
        },
    )
    assert got["k_ok"] is True
    assert got["plaintext"] == "hello agent"
    assert got["auth_tag"] == hmac_hex(key.k, "agent-1")
    assert decrypt_payload(key.k, got["theirs"].encode()) == b"from keylime"
