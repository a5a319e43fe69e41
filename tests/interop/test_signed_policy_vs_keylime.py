"""Signed runtime policies: verifier_lite accepts and refuses exactly what Keylime 7.14.3 does.

Keylime's own signers (keylime/dsse ``ecdsa.Signer`` and ``x509.Signer``, the code behind
``keylime-policy sign``) make the envelopes in Keylime's virtualenv.  Each case - valid,
tampered payload, wrong key, unsigned while signatures are required, x509, no key, signatures
not required - is then judged by Keylime's ``signing.get_runtime_policy_keys`` plus
``ima.verify_runtime_policy`` (what ``POST /allowlists/{name}`` runs) and by our
``validation.runtime_policy_text`` with :class:`PolicySignatures`.  Status and text agree.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional

import pytest

from tools.keylime_snippets import run_in_keylime
from verifier_lite import validation
from verifier_lite.errors import VerifierError
from verifier_lite.signed_policy import PolicySignatures

pytestmark = pytest.mark.interop

_MAKE = """\
import base64, copy, json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keylime.dsse import dsse, ecdsa, x509
from keylime.ima import ima
from keylime.policy.sign_runtime_policy import KEYLIME_PAYLOAD_TYPE

def pub_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

policy = copy.deepcopy(ima.EMPTY_RUNTIME_POLICY)
policy["digests"] = {"/usr/bin/true": ["a" * 64]}
text = json.dumps(policy)
key_a = ec.generate_private_key(ec.SECP256R1())
key_b = ec.generate_private_key(ec.SECP256R1())
key_c = ec.generate_private_key(ec.SECP256R1())
signer_c = x509.Signer(key_c, certificate_path="cert.pem")
result = {
    "policy": text,
    "ecdsa": dsse.Sign(KEYLIME_PAYLOAD_TYPE, text.encode(), ecdsa.Signer(key_a)),
    "x509": dsse.Sign(KEYLIME_PAYLOAD_TYPE, text.encode(), signer_c),
    "pub_a": pub_pem(key_a), "pub_b": pub_pem(key_b), "pub_c": pub_pem(key_c),
}
"""

# Keylime's key store is /var/lib/keylime/signing_keys; the shim keeps it in the scratch dir.
_JUDGE = """\
import os, types
from keylime import signing
from keylime.ima import ima
scratch = os.getcwd()
class _Path:
    def join(self, _dir, name):
        return os.path.join(scratch, name)
    exists = staticmethod(os.path.exists)
    isfile = staticmethod(os.path.isfile)
signing.os = types.SimpleNamespace(path=_Path(), makedirs=lambda *a, **k: None)
result = {}
for case in payload["cases"]:
    text = case["text"].encode()
    try:
        key = signing.get_runtime_policy_keys(text, case["key"])
        ima.verify_runtime_policy(text, key, verify_sig=case["require"])
        result[case["name"]] = [200, ""]
    except ima.ImaValidationError as exc:
        result[case["name"]] = [exc.code, exc.message]
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tampered(envelope: str) -> str:
    doc = json.loads(envelope)
    policy = json.loads(base64.b64decode(doc["payload"]))
    policy["digests"]["/usr/bin/evil"] = ["b" * 64]
    doc["payload"] = _b64(json.dumps(policy))
    return json.dumps(doc)


def _cases(made: dict[str, Any]) -> list[dict[str, Any]]:
    ecdsa, x509, plain = made["ecdsa"], made["x509"], made["policy"]
    a, b, c = (_b64(made[k]) for k in ("pub_a", "pub_b", "pub_c"))
    rows: list[tuple[str, str, Optional[str], bool]] = [
        # First, before any key has been remembered.
        ("signed_required_no_key", ecdsa, None, True),
        ("valid", ecdsa, a, True),
        ("tampered_payload", _tampered(ecdsa), a, True),
        ("wrong_key", ecdsa, b, True),
        ("unsigned_required", plain, a, True),
        ("unsigned_required_no_key", plain, None, True),
        ("signed_required_key_remembered", ecdsa, None, True),
        ("x509_valid", x509, c, True),
        ("x509_wrong_key", x509, a, True),
        ("x509_tampered", _tampered(x509), c, True),
        ("unsigned_not_required", plain, None, False),
        ("signed_not_required", ecdsa, None, False),
        ("tampered_not_required", _tampered(ecdsa), b, False),
    ]
    return [{"name": n, "text": t, "key": k, "require": r} for n, t, k, r in rows]


def _ours(case: dict[str, Any], keys_dir: Path) -> list[Any]:
    body = {"runtime_policy": _b64(case["text"]), "runtime_policy_key": case["key"]}
    try:
        validation.runtime_policy_text(body, PolicySignatures(case["require"], keys_dir))
    except VerifierError as exc:
        return [exc.http_status, str(exc)]
    return [200, ""]


def test_signed_policy_verdicts_match_keylime(tmp_path: Path) -> None:
    made = run_in_keylime(_MAKE, {})
    cases = _cases(made)
    theirs = run_in_keylime(_JUDGE, {"cases": cases})
    ours = {c["name"]: _ours(c, tmp_path / "keys") for c in cases}
    assert ours == theirs
    # The cases cover both outcomes and both refusals.
    assert theirs["valid"] == [200, ""] and theirs["x509_valid"] == [200, ""]
    assert theirs["tampered_payload"][0] == 401 and theirs["unsigned_required"][0] == 401
    assert theirs["signed_required_no_key"][0] == 401


def test_a_key_given_once_is_found_by_keyid_later(tmp_path: Path) -> None:
    """Keylime remembers a supplied key under its SHA-256 and finds it by the ecdsa keyid;
    so do we (under data_dir/signing_keys)."""
    made = run_in_keylime(_MAKE, {})
    first = {"name": "first", "text": made["ecdsa"], "key": _b64(made["pub_a"]), "require": True}
    again = dict(first, name="again", key=None)
    theirs = run_in_keylime(_JUDGE, {"cases": [first, again]})
    keys = tmp_path / "keys"
    assert theirs == {"first": _ours(first, keys), "again": _ours(again, keys)}
    assert theirs["again"] == [200, ""]
