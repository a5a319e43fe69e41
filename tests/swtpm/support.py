"""Helpers shared by the swtpm tests: configs, an opened backend, tpm2_checkquote."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import TpmConfig
from edge_agent.tpm.pytss_backend import PytssTpm
from edge_agent.tpm.pytss_sync import QuoteRaceHook

# Keylime's two AK flavours: (tpm_encryption_alg, tpm_signing_alg).
KEY_FLAVOURS = {"rsa": ("rsa", "rsassa"), "ecc": ("ecc", "ecdsa")}
# The verifier's nonce: 20 alphanumerics (Keylime TPM_NONCE_LEN/random_password(20)).
NONCE = b"Xq7rT2mZp9LkV4sB8nWc"
# PCRs 0 (firmware), 10 (IMA) and 16 (Keylime's data PCR).
MASK = 0x10401
MASK_PCRS = (0, 10, 16)
CHECKQUOTE_TIMEOUT_S = 30


def config(
    tcti: str,
    data_dir: Path,
    flavour: str = "rsa",
    *,
    hash_alg: str = "sha256",
    ek_handle: Optional[int] = None,
) -> TpmConfig:
    encryption_alg, signing_alg = KEY_FLAVOURS[flavour]
    return TpmConfig(
        tcti=tcti,
        ek_handle=ek_handle,
        encryption_alg=encryption_alg,
        hash_alg=hash_alg,
        signing_alg=signing_alg,
        data_dir=data_dir,
    )


@asynccontextmanager
async def opened(
    cfg: TpmConfig, *, quote_race_hook: Optional[QuoteRaceHook] = None
) -> AsyncIterator[PytssTpm]:
    tpm = await PytssTpm.open(cfg, quote_race_hook=quote_race_hook)
    try:
        yield tpm
    finally:
        await tpm.aclose()


def tpm2_checkquote(
    workdir: Path, quote: KeylimeQuote, ak_public: bytes, nonce: bytes, hash_alg: str
) -> subprocess.CompletedProcess[str]:
    """Run tpm2-tools' verifier on the quote, as Keylime's verifier did before 7.x."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = {
        "ak.pem": parse_tpm2b_public(ak_public).public_key_pem(),
        "quote.msg": quote.attest,
        "quote.sig": quote.signature,
        "quote.pcrs": quote.pcr_blob,
    }
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    command = [
        "tpm2_checkquote",
        "--public", str(workdir / "ak.pem"),
        "--message", str(workdir / "quote.msg"),
        "--signature", str(workdir / "quote.sig"),
        "--pcr", str(workdir / "quote.pcrs"),
        "--hash-algorithm", hash_alg,
        "--qualification", nonce.hex(),
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=CHECKQUOTE_TIMEOUT_S, check=False
    )
