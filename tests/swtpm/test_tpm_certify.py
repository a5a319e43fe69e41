"""TPM2_Certify of the AK by the AK on swtpm: the push model's proof of possession.

Keylime 7.14.3's verifier (keylime/tpm/tpm_main.py, ``verify_tpm_object``) accepts the proof
when the TPMS_ATTEST is an ATTEST_CERTIFY whose extraData is its challenge and whose certified
Name is the AK's, signed by the AK; these tests check each of those on a real TPM 2.0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tpm2_pytss import TPM2_ST, TPMS_ATTEST

from attest_protocol.errors import QuoteSignatureError
from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.public import parse_tpm2b_public
from attest_protocol.tpm2.signature import parse_tpmt_signature, verify_signature
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

# The verifier's PoP challenge: 16 random bytes (auth_session.py, generate_challenge(128)).
CHALLENGE = bytes.fromhex("8f0e2a61c3d94b7a15e6f02c9d3b7a44")
TPM_GENERATED = 0xFF544347


@pytest.mark.parametrize("flavour", ["rsa", "ecc"])
async def test_ak_certifies_itself_over_the_challenge(
    swtpm: Swtpm, tmp_path: Path, flavour: str
) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ak = await tpm.ak()
        message, signature = await tpm.certify_ak(CHALLENGE)
    attest, used = TPMS_ATTEST.unmarshal(message)
    assert used == len(message)
    assert attest.magic == TPM_GENERATED
    assert attest.type == TPM2_ST.ATTEST_CERTIFY
    assert bytes(attest.extraData) == CHALLENGE
    public = parse_tpm2b_public(ak.public)
    assert bytes(attest.attested.certify.name) == public.name() == ak.name
    sig = parse_tpmt_signature(signature)
    expected = TpmAlg.RSASSA if flavour == "rsa" else TpmAlg.ECDSA
    assert (sig.sig_alg, sig.hash_alg) == (expected, TpmAlg.SHA256)
    verify_signature(public, sig, message)  # raises when it does not verify
    tampered = message[:-1] + bytes([message[-1] ^ 1])
    with pytest.raises(QuoteSignatureError):
        verify_signature(public, sig, tampered)


async def test_a_challenge_longer_than_qualifying_data_is_refused(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        with pytest.raises(ValueError, match="at most 64"):
            await tpm.certify_ak(b"x" * 65)
