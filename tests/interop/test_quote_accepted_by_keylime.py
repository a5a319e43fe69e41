"""Quotes from our TPM layer pass real Keylime 7.14.3's own quote check.

``keylime.tpm.tpm_util.checkquote`` is what the Keylime verifier runs on every quote an agent
sends; it runs here in Keylime's own virtualenv on the bytes our layer produced on swtpm.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attest_protocol.quote import verify_quote
from attest_protocol.tpm2.constants import alg_for_hash_name
from attest_protocol.tpm2.public import parse_tpm2b_public
from tests.swtpm.support import MASK, MASK_PCRS, NONCE, config, opened, tpm2_checkquote
from tools.keylime_snippets import KeylimeSnippetError, keylime_checkquote
from tools.swtpm import Swtpm

pytestmark = [pytest.mark.swtpm, pytest.mark.interop]


@pytest.mark.parametrize("flavour", ["rsa", "ecc"])
async def test_three_verifiers_accept_our_quote(swtpm: Swtpm, tmp_path: Path, flavour: str) -> None:
    async with opened(config(swtpm.tcti, tmp_path / "data", flavour)) as tpm:
        ak = await tpm.ak()
        await tpm.bind_data_pcr(b"-----BEGIN PUBLIC KEY-----\nnot a real key\n")
        quote = await tpm.quote(NONCE, MASK)
        expected = await tpm.read_pcrs("sha256", MASK_PCRS)
    ak_pub = parse_tpm2b_public(ak.public)

    ours = verify_quote(quote, ak_pub, NONCE, hash_alg=alg_for_hash_name("sha256"))
    theirs = keylime_checkquote(
        ak_pub.public_key_pem(), NONCE.decode(), quote.signature, quote.attest, quote.pcr_blob,
        "sha256",
    )  # fmt: skip
    tools = tpm2_checkquote(tmp_path / "checkquote", quote, ak.public, NONCE, "sha256")

    assert ours.pcrs == expected
    assert theirs == {pcr: value.hex() for pcr, value in expected.items()}
    assert tools.returncode == 0, tools.stderr


async def test_keylime_rejects_what_we_reject(swtpm: Swtpm, tmp_path: Path) -> None:
    """The same forgeries fail Keylime's check too: the two verifiers agree."""
    async with opened(config(swtpm.tcti, tmp_path / "data")) as tpm:
        ak = await tpm.ak()
        quote = await tpm.quote(NONCE, MASK)
    pem = parse_tpm2b_public(ak.public).public_key_pem()
    signature = bytearray(quote.signature)
    signature[-1] ^= 1
    forged = dataclasses.replace(quote, signature=bytes(signature))
    cases = [(forged, NONCE.decode()), (quote, "another20charsnonce1")]
    for case, nonce in cases:
        with pytest.raises(KeylimeSnippetError):
            keylime_checkquote(pem, nonce, case.signature, case.attest, case.pcr_blob, "sha256")
