"""The pure quote checks (verifier_lite.checks) on real swtpm quotes, one failure at a time."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol.errors import ParseError
from attest_protocol.keylime_facts import extend_from_zero
from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm.pytss_backend import PytssTpm
from tests.registrar.support import ak_public
from tests.swtpm.support import config as tpm_config
from tools.swtpm import Swtpm
from verifier_lite.checks import (
    CheckInput,
    Evidence,
    check_evidence,
    parse_evidence,
)
from verifier_lite.tpm_policy import parse_tpm_policy, quote_mask

pytestmark = pytest.mark.swtpm

NONCE = "Xq7rT2mZp9LkV4sB8nWc"
MASK = (1 << 16) | (1 << 23)


def pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@dataclasses.dataclass(frozen=True)
class Quoted:
    evidence: Evidence
    check: CheckInput
    tpm: PytssTpm


@pytest.fixture
async def quoted(swtpm: Swtpm, tmp_path: Path) -> AsyncIterator[Quoted]:
    tpm = await PytssTpm.open(tpm_config(swtpm.tcti, tmp_path))
    try:
        ak = await tpm.ak()
        nk = pem(rsa.generate_private_key(65537, 2048))
        await tpm.bind_data_pcr(nk.encode("ascii"))
        quote = await tpm.quote(NONCE.encode(), MASK, ak.hash_alg)
        evidence = Evidence(
            quote.encode(), ak.hash_alg, "rsa", ak.signing_alg, nk, 1, None, 0, None
        )
        check = CheckInput(
            ak_tpm_b64=base64.b64encode(ak.public).decode(),
            nonce=NONCE.encode(),
            accept_hash_algs=("sha256",),
            accept_enc_algs=("rsa",),
            accept_sign_algs=(ak.signing_alg,),
            tpm_policy={23: ("00" * 32,)},
            public_key_pem=None,
            previous_clock=None,
            runtime_policy=None,
            ima_state=None,
            boottime=1,
        )
        yield Quoted(evidence, check, tpm)
    finally:
        await tpm.aclose()


def event_ids(quoted: Quoted, **changes: object) -> list[str]:
    check = dataclasses.replace(quoted.check, **changes)  # type: ignore[arg-type]
    return [f.event_id for f in check_evidence(check, quoted.evidence).failures]


async def test_an_honest_quote_passes_and_yields_clock_and_key(quoted: Quoted) -> None:
    result = check_evidence(quoted.check, quoted.evidence)
    assert result.ok
    assert result.public_key_pem == quoted.evidence.pubkey
    assert result.clock is not None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"nonce": b"another-nonce-value!"}, ["qoute_validation.quote_validation"]),
        (
            {"ak_tpm_b64": base64.b64encode(ak_public()).decode()},
            ["qoute_validation.quote_validation"],
        ),
        ({"accept_hash_algs": ("sha384",)}, ["qoute_validation.invalid_hash_alg"]),
        ({"accept_enc_algs": ("ecc",)}, ["qoute_validation.invalid_enc_alg"]),
        ({"accept_sign_algs": ("ecschnorr",)}, ["qoute_validation.invalid_sign_alg"]),
        ({"tpm_policy": {23: ("11" * 32,)}}, ["pcr_validation.invalid_pcr_23"]),
        ({"tpm_policy": {0: ("00" * 32,)}}, ["pcr_validation.missing_pcrs"]),
        ({"tpm_policy": {}}, []),
        # Keylime's aliases: an accepted "rsa2048" admits the agent's "rsa" (and back).
        ({"accept_enc_algs": ("rsa2048",)}, []),
    ],
)
async def test_each_failed_check_has_keylimes_event_id(
    quoted: Quoted, changes: dict[str, object], expected: list[str]
) -> None:
    assert event_ids(quoted, **changes) == expected


async def test_pcr16_must_bind_the_key(quoted: Quoted) -> None:
    other = pem(rsa.generate_private_key(65537, 2048))
    wrong = dataclasses.replace(quoted.evidence, pubkey=other)
    failures = check_evidence(quoted.check, wrong).failures
    assert [f.event_id for f in failures] == ["pcr_validation.invalid_pcr_16"]
    assert (
        json.loads(failures[0].context)["expected"]
        == extend_from_zero(TpmAlg.SHA256, other.encode()).hex()
    )


async def test_an_nk_that_cannot_take_v_is_bad_evidence(quoted: Quoted) -> None:
    """PCR 16 binds the key, but V cannot be encrypted to an EC key: the agent's evidence
    fails (irrecoverably), the verifier's polling task does not."""
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    await quoted.tpm.bind_data_pcr(ec_pem.encode("ascii"))
    quote = await quoted.tpm.quote(NONCE.encode(), MASK, quoted.evidence.hash_alg)
    evidence = dataclasses.replace(quoted.evidence, quote=quote.encode(), pubkey=ec_pem)
    failures = check_evidence(quoted.check, evidence).failures
    assert [f.event_id for f in failures] == ["qoute_validation.invalid_pubkey"]
    assert not failures[0].recoverable


async def test_clock_going_back_fails(quoted: Quoted) -> None:
    clock = check_evidence(quoted.check, quoted.evidence).clock
    assert clock is not None
    ahead = dataclasses.replace(clock, clock=clock.clock + 10**9)
    assert event_ids(quoted, previous_clock=ahead) == ["qoute_validation.quote_validation"]
    # Another boot (boottime changed): the clock is not compared.
    assert event_ids(quoted, previous_clock=ahead, boottime=2) == []


def test_parse_evidence_names_bad_members() -> None:
    good = {"quote": "r", "hash_alg": "sha256", "enc_alg": "rsa", "sign_alg": "rsassa"}
    assert parse_evidence(good).boottime == 0
    for bad in (
        {**good, "quote": 5},
        {k: v for k, v in good.items() if k != "hash_alg"},
        {**good, "boottime": -1},
        {**good, "ima_measurement_list_entry": True},
        {**good, "ima_measurement_list": 3},
    ):
        with pytest.raises(ParseError):
            parse_evidence(bad)


def test_quote_mask_and_tpm_policy() -> None:
    assert quote_mask('{"mask": "0x800000"}', with_ima=False) == hex((1 << 23) | (1 << 16))
    assert quote_mask('{"0": ["aa"]}', with_ima=True) == hex(1 | (1 << 10) | (1 << 16))
    assert quote_mask("", with_ima=False) == hex(1 << 16)
    assert parse_tpm_policy('{"16": "AB", "mask": "0x1"}') == {16: ("ab",)}
    for bad in ('{"x": []}', "[1]", "{", '{"1": [2]}', '{"24": []}'):
        with pytest.raises(ValueError):
            parse_tpm_policy(bad)
