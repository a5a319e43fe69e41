"""EK creation and EK certificates on swtpm."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest_protocol.tpm2.constants import EccCurve, TpmAlg
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import EkCertificateMissing, TpmConfigError
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

# TCG EK Credential Profile §B.3.3: PolicySecret(TPM_RH_ENDORSEMENT) in SHA-256 ("policy A").
POLICY_A_SHA256 = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
# Handles where swtpm_setup persists the EKs it certifies.
SWTPM_RSA_EK_HANDLE = 0x81010001
SWTPM_ECC_P384_EK_HANDLE = 0x81010016
TRANSIENT_HANDLE_TYPE = 0x80


def _spki(key: object) -> bytes:
    assert hasattr(key, "public_bytes")
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


@pytest.mark.parametrize(
    ("flavour", "key_type", "curve", "key_bits"),
    [("rsa", TpmAlg.RSA, None, 2048), ("ecc", TpmAlg.ECC, EccCurve.NIST_P256, 0)],
)
async def test_ek_from_default_template(
    swtpm: Swtpm,
    tmp_path: Path,
    flavour: str,
    key_type: TpmAlg,
    curve: EccCurve | None,
    key_bits: int,
) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ek = await tpm.ek()
    public = parse_tpm2b_public(ek.public)
    assert ek.encryption_alg == flavour
    assert public.type == key_type
    assert public.curve_id == curve
    assert public.key_bits == key_bits
    assert public.name_alg == TpmAlg.SHA256
    assert public.auth_policy == POLICY_A_SHA256
    assert ek.handle >> 24 == TRANSIENT_HANDLE_TYPE


async def test_ek_from_persistent_handle_equals_template_ek(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path / "a")) as tpm:
        created = await tpm.ek()
    cfg = config(swtpm.tcti, tmp_path / "b", ek_handle=SWTPM_RSA_EK_HANDLE)
    async with opened(cfg) as tpm:
        persistent = await tpm.ek()
    assert persistent.handle == SWTPM_RSA_EK_HANDLE
    assert persistent.public == created.public


async def test_rsa_ek_certificate_matches_ek_and_ca(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        ek = await tpm.ek()
        der = await tpm.ek_certificate()
    cert = x509.load_der_x509_certificate(der)
    assert _spki(cert.public_key()) == _spki(parse_tpm2b_public(ek.public).public_key())
    issuer = x509.load_pem_x509_certificate((swtpm.ca_dir / "issuercert.pem").read_bytes())
    root_pem = (swtpm.ca_dir / "swtpm-localca-rootca-cert.pem").read_bytes()
    cert.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(x509.load_pem_x509_certificate(root_pem))


async def test_ecc_p256_ek_certificate_missing(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path, "ecc")) as tpm:
        with pytest.raises(EkCertificateMissing) as caught:
            await tpm.ek_certificate()
    assert caught.value.nv_index == 0x01C0000A
    assert "0x01c0000a" in str(caught.value)


async def test_persistent_p384_ek_finds_high_range_certificate(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    cfg = config(swtpm.tcti, tmp_path, ek_handle=SWTPM_ECC_P384_EK_HANDLE)
    async with opened(cfg) as tpm:
        ek = await tpm.ek()
        der = await tpm.ek_certificate()
    public = parse_tpm2b_public(ek.public)
    assert ek.encryption_alg == "ecc"
    assert public.curve_id == EccCurve.NIST_P384
    cert = x509.load_der_x509_certificate(der)
    assert _spki(cert.public_key()) == _spki(public.public_key())


async def test_sha384_ek_cannot_parent_the_ak(swtpm: Swtpm, tmp_path: Path) -> None:
    cfg = config(swtpm.tcti, tmp_path, "ecc", ek_handle=SWTPM_ECC_P384_EK_HANDLE)
    async with opened(cfg) as tpm:
        with pytest.raises(TpmConfigError) as caught:
            await tpm.ak()
    assert caught.value.option == "ek_handle"
    assert "SHA384" in str(caught.value)
