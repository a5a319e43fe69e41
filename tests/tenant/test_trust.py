"""The checks add makes before trusting an agent: EK certificate chain and identity quote."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest

from attest_protocol.keylime_facts import DATA_PCR, expected_data_pcr
from attest_protocol.pki import create_ca
from attest_protocol.tpm2.constants import TpmAlg
from tenant_lite.errors import AttestationError, ConfigError
from tenant_lite.trust import check_ek_certificate, check_identity_quote, ek_checks
from tests.registrar.support import software_identity
from tests.unit.test_quote import ak_public, ec_key, make_quote

AGENT = "agent-under-test"
PUBKEY = "-----BEGIN PUBLIC KEY-----\nthe agent's NK\n-----END PUBLIC KEY-----\n"
NONCE = "k3yl1meN0nce4Quote7x"
ACCEPTED = {
    "hash": frozenset({"sha256"}),
    "encryption": frozenset({"ecc", "rsa"}),
    "signing": frozenset({"ecdsa", "rsassa"}),
}


def registrar_record(with_cert: bool = True) -> tuple[dict[str, Any], bytes]:
    """A record as the registrar returns it, and the PEM of the CA that made its EK cert."""
    ident = software_identity()
    record = {
        "ek_tpm": base64.b64encode(ident.ek_tpm).decode(),
        "ekcert": base64.b64encode(ident.ekcert).decode() if with_cert else None,
        "aik_tpm": base64.b64encode(ident.aik_tpm).decode(),
    }
    return record, ident.ekcert


def store_with(tmp_path: Path, *pems: bytes) -> Path:
    store = tmp_path / "ek-ca"
    store.mkdir()
    for i, pem in enumerate(pems):
        (store / f"ca{i}.pem").write_bytes(pem)
    return store


def test_ek_cert_from_another_ca_is_refused_naming_the_store(tmp_path: Path) -> None:
    record, _ = registrar_record()
    store = store_with(tmp_path, create_ca("some other TPM vendor").cert_pem)
    with pytest.raises(AttestationError) as err:
        check_ek_certificate(AGENT, record, store)
    assert err.value.check == "ek-certificate"
    assert str(store) in str(err.value)
    assert "test TPM manufacturer" in str(err.value)  # the issuer that did not verify


def test_missing_ek_cert_is_refused_when_required(tmp_path: Path) -> None:
    record, _ = registrar_record(with_cert=False)
    store = store_with(tmp_path, create_ca("vendor").cert_pem)
    with pytest.raises(AttestationError, match="no EK certificate"):
        ek_checks(AGENT, record, require_ek_cert=True, store_dir=store, script="")


def test_empty_store_is_a_config_error(tmp_path: Path) -> None:
    record, _ = registrar_record()
    with pytest.raises(ConfigError):
        check_ek_certificate(AGENT, record, store_with(tmp_path))


def test_no_checks_configured_warns() -> None:
    record, _ = registrar_record()
    warnings = ek_checks(AGENT, record, require_ek_cert=False, store_dir=None, script="")
    assert warnings and "not known to be genuine" in warnings[0]


def _script(tmp_path: Path, status: int) -> str:
    path = tmp_path / f"check-{status}.sh"
    path.write_text(
        f'#!/bin/sh\n[ -n "$EK" ] && [ "$AGENT_UUID" = "{AGENT}" ] && exit {status}\nexit 99\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ek_check_script_decides(tmp_path: Path) -> None:
    record, _ = registrar_record()
    assert (
        ek_checks(AGENT, record, require_ek_cert=False, store_dir=None, script=_script(tmp_path, 0))
        == []
    )
    with pytest.raises(AttestationError) as err:
        ek_checks(AGENT, record, require_ek_cert=False, store_dir=None, script=_script(tmp_path, 1))
    assert err.value.check == "ek-check-script"


def identity_results(key: Any, *, nonce: str = NONCE, bound_to: str = PUBKEY) -> dict[str, str]:
    pcr16 = expected_data_pcr(TpmAlg.SHA256, bound_to)
    quote = make_quote(key, TpmAlg.ECDSA, nonce=nonce.encode(), blob_values={DATA_PCR: pcr16})
    return {
        "quote": quote.encode(),
        "hash_alg": "sha256",
        "enc_alg": "ecc",
        "sign_alg": "ecdsa",
        "pubkey": PUBKEY,
    }


def aik_b64(key: Any) -> str:
    return base64.b64encode(ak_public(key).to_tpm2b()).decode()


def test_identity_quote_accepted_returns_the_pubkey() -> None:
    key = ec_key()
    got = check_identity_quote(AGENT, identity_results(key), aik_b64(key), NONCE, ACCEPTED)
    assert got == PUBKEY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nonce": "another-nonce-abcdefg"}, "does not verify"),
        ({"bound_to": "another key"}, f"PCR {DATA_PCR}"),
    ],
)
def test_identity_quote_refused(change: dict[str, str], message: str) -> None:
    key = ec_key()
    with pytest.raises(AttestationError, match=message):
        check_identity_quote(AGENT, identity_results(key, **change), aik_b64(key), NONCE, ACCEPTED)


def test_identity_quote_by_another_ak_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AttestationError, match="registered AK"):
        check_identity_quote(AGENT, identity_results(other), aik_b64(ec_key()), NONCE, ACCEPTED)


def test_unaccepted_algorithm_is_refused() -> None:
    key = ec_key()
    results = identity_results(key)
    results["hash_alg"] = "sha1"
    with pytest.raises(AttestationError, match="accept_tpm_hash_algs"):
        check_identity_quote(AGENT, results, aik_b64(key), NONCE, ACCEPTED)


def test_data_pcr_value_is_keylimes_sim_extend() -> None:
    import hashlib

    inner = hashlib.sha256(PUBKEY.encode()).digest()
    assert expected_data_pcr(TpmAlg.SHA256, PUBKEY) == hashlib.sha256(bytes(32) + inner).digest()
