"""The AK: its template, and persistence across restarts, EKs and configurations."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from attest_protocol.quote import verify_quote
from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.public import check_attestation_key, parse_tpm2b_public
from edge_agent.tpm.config import AK_FILE_NAME
from tests.swtpm.support import MASK, NONCE, config, opened
from tools.swtpm import Swtpm, manufacture

pytestmark = pytest.mark.swtpm


@pytest.mark.parametrize(
    ("flavour", "key_type", "scheme"),
    [("rsa", TpmAlg.RSA, TpmAlg.RSASSA), ("ecc", TpmAlg.ECC, TpmAlg.ECDSA)],
)
async def test_ak_is_a_restricted_signing_key(
    swtpm: Swtpm, tmp_path: Path, flavour: str, key_type: TpmAlg, scheme: TpmAlg
) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ak = await tpm.ak()
    public = parse_tpm2b_public(ak.public)
    check_attestation_key(public)
    assert ak.created
    assert public.type == key_type
    assert public.scheme.alg == scheme
    assert public.scheme.hash_alg == TpmAlg.SHA256
    assert public.name_alg == TpmAlg.SHA256
    assert ak.name == public.name()


async def test_ak_reloaded_after_restart(swtpm: Swtpm, tmp_path: Path) -> None:
    cfg = config(swtpm.tcti, tmp_path)
    async with opened(cfg) as tpm:
        first = await tpm.ak()
    ak_file = tmp_path / AK_FILE_NAME
    assert stat.S_IMODE(ak_file.stat().st_mode) == 0o600
    async with opened(cfg) as tpm:
        second = await tpm.ak()
        quote = await tpm.quote(NONCE, MASK)
    assert first.created and not second.created
    assert second.name == first.name
    # The reloaded key is the stored one: its quotes verify under the first run's public key.
    verify_quote(quote, parse_tpm2b_public(first.public), NONCE)


async def test_new_ak_for_other_encryption_alg(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path, "rsa")) as tpm:
        rsa_ak = await tpm.ak()
    async with opened(config(swtpm.tcti, tmp_path, "ecc")) as tpm:
        ecc_ak = await tpm.ak()
    assert ecc_ak.created and ecc_ak.name != rsa_ak.name
    stored = json.loads((tmp_path / AK_FILE_NAME).read_text())
    assert stored["ak_sign_alg"] == "EcDsa"  # rust-keylime's agent_data.json names


async def test_new_ak_for_other_hash_alg(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        sha256_ak = await tpm.ak()
    async with opened(config(swtpm.tcti, tmp_path, hash_alg="sha384")) as tpm:
        sha384_ak = await tpm.ak()
    assert sha384_ak.created and sha384_ak.name != sha256_ak.name
    assert parse_tpm2b_public(sha384_ak.public).scheme.hash_alg == TpmAlg.SHA384


async def test_new_ak_under_another_ek(swtpm: Swtpm, tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    async with opened(config(swtpm.tcti, data_dir)) as tpm:
        first = await tpm.ak()
    other_state = manufacture(tmp_path / "other-template")
    with Swtpm(other_state, tmp_path / "other-run") as other:
        async with opened(config(other.tcti, data_dir)) as tpm:
            second = await tpm.ak()
            await tpm.quote(NONCE, MASK)
    assert second.created and second.name != first.name


@pytest.mark.parametrize("content", [b"not json", b'{"version": 1}', b""])
async def test_unusable_ak_file_is_replaced(swtpm: Swtpm, tmp_path: Path, content: bytes) -> None:
    (tmp_path / AK_FILE_NAME).write_bytes(content)
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        ak = await tpm.ak()
    assert ak.created
    stored = json.loads((tmp_path / AK_FILE_NAME).read_text())
    assert stored["ak_public"]


async def test_ak_the_tpm_refuses_is_replaced(swtpm: Swtpm, tmp_path: Path) -> None:
    cfg = config(swtpm.tcti, tmp_path)
    async with opened(cfg) as tpm:
        first = await tpm.ak()
    ak_file = tmp_path / AK_FILE_NAME
    stored = json.loads(ak_file.read_text())
    # Breaks the TPM's integrity HMAC over the wrapped private part.
    stored["ak_private"][-1] ^= 0xFF
    ak_file.write_text(json.dumps(stored))
    async with opened(cfg) as tpm:
        second = await tpm.ak()
    assert second.created and second.name != first.name
