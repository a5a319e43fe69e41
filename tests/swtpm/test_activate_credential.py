"""Credential activation on swtpm: blobs from our MakeCredential and from Keylime 7.14.3's.

The registrar side (``attest_protocol.credential.make_credential``, or Keylime's own
``tpm_util.makecredential``) encrypts a challenge to the EK's public area and binds it to the
AK's Name; the agent side (``Tpm.activate_credential``) must get the challenge back from a
real TPM 2.0 implementation, and must not for a blob bound to another Name (Part 1 §24).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from attest_protocol.credential import make_credential
from attest_protocol.tpm2.constants import EccCurve, TpmAlg
from attest_protocol.tpm2.public import TpmPublic, parse_tpm2b_public
from edge_agent.tpm.errors import TpmCommandError
from tests.fixtures.keylime import keylime_makecredential
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

# What the registrar sends: Keylime draws 32 random bytes; any TPM2B_DIGEST-sized value works.
CHALLENGE = bytes.fromhex("6c696d656c65742063726564656e7469616c2c2033322062797465732121a5c3")
# The flavours' EKs, from the TCG default templates L-1 (RSA 2048) and L-2 (ECC NIST P-256).
EK_KINDS = {"rsa": (TpmAlg.RSA, None), "ecc": (TpmAlg.ECC, EccCurve.NIST_P256)}
# TPM_RC_INTEGRITY (Part 2 §6.6.3) is a format-one code: bit 7 set, error number 0x1F in bits
# 0-5; bits 6 and 8-11 say which parameter failed.
RC_FORMAT_ONE = 0x080
RC_ERROR_NUMBER_MASK = 0x03F
RC_INTEGRITY_NUMBER = 0x01F


def _check_ek(public: bytes, flavour: str) -> TpmPublic:
    ek = parse_tpm2b_public(public)
    assert (ek.type, ek.curve_id) == EK_KINDS[flavour]
    return ek


@pytest.mark.parametrize("flavour", sorted(EK_KINDS))
async def test_our_blob_activates(swtpm: Swtpm, tmp_path: Path, flavour: str) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ek_info = await tpm.ek()
        ak = await tpm.ak()
        blob = make_credential(_check_ek(ek_info.public, flavour), ak.name, CHALLENGE)
        assert await tpm.activate_credential(blob) == CHALLENGE


@pytest.mark.interop
@pytest.mark.parametrize("flavour", sorted(EK_KINDS))
async def test_keylime_blob_activates(
    swtpm: Swtpm, tmp_path: Path, keylime_venv: Path, flavour: str
) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ek_info = await tpm.ek()
        _check_ek(ek_info.public, flavour)
        ak = await tpm.ak()
        # Keylime runs in its own interpreter; keep the subprocess off the event loop.
        blob = await trio.to_thread.run_sync(
            keylime_makecredential, ek_info.public, CHALLENGE, ak.name
        )
        assert await tpm.activate_credential(blob) == CHALLENGE


@pytest.mark.parametrize("flavour", sorted(EK_KINDS))
async def test_blob_for_another_name_fails(swtpm: Swtpm, tmp_path: Path, flavour: str) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ek_info = await tpm.ek()
        ak = await tpm.ak()
        other_name = ak.name[:2] + bytes(b ^ 0xFF for b in ak.name[2:])
        blob = make_credential(_check_ek(ek_info.public, flavour), other_name, CHALLENGE)
        with pytest.raises(TpmCommandError) as info:
            await tpm.activate_credential(blob)
    error = info.value
    assert error.operation.startswith("activating the credential")
    assert error.rc is not None
    assert error.rc & RC_FORMAT_ONE
    assert error.rc & RC_ERROR_NUMBER_MASK == RC_INTEGRITY_NUMBER
    assert CHALLENGE.hex() not in str(error)
