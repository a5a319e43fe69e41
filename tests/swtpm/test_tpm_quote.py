"""Quotes, PCR reads, the data PCR, concurrency and the quote/read retry on swtpm."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from attest_protocol.quote import VerifiedQuote, verify_quote
from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import PcrsKeptChanging, TctiError, TpmConfig
from edge_agent.tpm.pytss_backend import PytssTpm
from edge_agent.tpm.pytss_sync import DATA_PCR, QUOTE_ATTEMPTS, PcrExtender
from tests.swtpm.support import MASK, MASK_PCRS, NONCE, config, opened, tpm2_checkquote
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

NK_PUBLIC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\nnot a real key, only bytes to bind\n-----END PUBLIC KEY-----\n"
)
CONCURRENT_QUOTES = 8
OVERLAP_WINDOW_S = 0.005
# A TCTI failure must be reported, not hang the agent: far more than a refused connect takes.
BAD_TCTI_DEADLINE_S = 10


def _extend(old: bytes, data: bytes, alg: str = "sha256") -> bytes:
    """PCR_Extend in software: new = H(old || H(data))."""
    return hashlib.new(alg, old + hashlib.new(alg, data).digest()).digest()


@pytest.mark.parametrize("flavour", ["rsa", "ecc"])
async def test_quote_verifies_here_and_with_tpm2_checkquote(
    swtpm: Swtpm, tmp_path: Path, flavour: str
) -> None:
    async with opened(config(swtpm.tcti, tmp_path, flavour)) as tpm:
        ak = await tpm.ak()
        await tpm.bind_data_pcr(NK_PUBLIC_PEM)
        quote = await tpm.quote(NONCE, MASK)
        current = await tpm.read_pcrs("sha256", MASK_PCRS)
    verified = verify_quote(quote, parse_tpm2b_public(ak.public), NONCE, hash_alg=TpmAlg.SHA256)
    assert verified.pcrs == current
    assert quote.encode().startswith("r")
    checked = tpm2_checkquote(tmp_path / "checkquote", quote, ak.public, NONCE, "sha256")
    assert checked.returncode == 0, checked.stderr


async def test_tpm2_checkquote_rejects_another_nonce(swtpm: Swtpm, tmp_path: Path) -> None:
    """The tpm2_checkquote check above can fail: it does with the wrong nonce."""
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        ak = await tpm.ak()
        quote = await tpm.quote(NONCE, MASK)
    other_nonce = NONCE[::-1]
    checked = tpm2_checkquote(tmp_path / "checkquote", quote, ak.public, other_nonce, "sha256")
    assert checked.returncode != 0


async def test_data_pcr_holds_extend_of_nk_key_hash(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        await tpm.bind_data_pcr(b"an earlier key")
        await tpm.bind_data_pcr(NK_PUBLIC_PEM)  # resets first, so the earlier key is gone
        sha256 = await tpm.read_pcrs("sha256", [DATA_PCR])
        sha1 = await tpm.read_pcrs("sha1", [DATA_PCR])
    assert sha256[DATA_PCR] == _extend(bytes(32), NK_PUBLIC_PEM)
    assert sha1[DATA_PCR] == bytes(20)  # only the configured bank is extended, as rust-keylime


async def test_read_pcrs_beyond_eight_per_command(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        sha256 = await tpm.read_pcrs("sha256", range(24))
        sha1 = await tpm.read_pcrs("sha1", range(24))
    assert sorted(sha256) == sorted(sha1) == list(range(24))
    assert {len(v) for v in sha256.values()} == {32}
    assert {len(v) for v in sha1.values()} == {20}
    # swtpm starts PCRs 17-22 (locality-reset PCRs) at all ones, the others at zero.
    assert sha256[17] == b"\xff" * 32 and sha256[0] == bytes(32)


async def test_concurrent_quotes_all_verify(swtpm: Swtpm, tmp_path: Path) -> None:
    results: dict[int, VerifiedQuote] = {}
    inside = Counter()

    def race(attempt: int, extend: PcrExtender) -> None:
        # Runs in the worker thread between TPM2_Quote and TPM2_PCR_Read: widen that window
        # and count how many quotes are in it at once.  The limiter must keep it at one.
        with inside.lock:
            inside.now += 1
            inside.peak = max(inside.peak, inside.now)
        time.sleep(OVERLAP_WINDOW_S)
        with inside.lock:
            inside.now -= 1

    cfg = config(swtpm.tcti, tmp_path, "ecc")
    async with opened(cfg, quote_race_hook=race) as tpm:
        ak = parse_tpm2b_public((await tpm.ak()).public)

        async def one(i: int) -> None:
            nonce = f"nonce{i:015d}".encode()
            if i % 2:
                await tpm.bind_data_pcr(NK_PUBLIC_PEM)
            quote = await tpm.quote(nonce, MASK)
            results[i] = verify_quote(quote, ak, nonce, hash_alg=TpmAlg.SHA256)

        async with trio.open_nursery() as nursery:
            for i in range(CONCURRENT_QUOTES):
                nursery.start_soon(one, i)
    assert sorted(results) == list(range(CONCURRENT_QUOTES))
    assert inside.peak == 1


@dataclass
class Counter:
    now: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


async def test_quote_retries_when_a_pcr_changes_after_the_quote(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    attempts: list[int] = []

    def race(attempt: int, extend: PcrExtender) -> None:
        attempts.append(attempt)
        if attempt < 2:
            extend(10, f"measurement {attempt}".encode())

    async with opened(config(swtpm.tcti, tmp_path), quote_race_hook=race) as tpm:
        ak = parse_tpm2b_public((await tpm.ak()).public)
        quote = await tpm.quote(NONCE, MASK)
    verified = verify_quote(quote, ak, NONCE)
    assert attempts == [0, 1, 2]
    expected_pcr10 = _extend(_extend(bytes(32), b"measurement 0"), b"measurement 1")
    assert verified.pcrs[10] == expected_pcr10


async def test_quote_gives_up_when_pcrs_never_settle(swtpm: Swtpm, tmp_path: Path) -> None:
    attempts: list[int] = []

    def race(attempt: int, extend: PcrExtender) -> None:
        attempts.append(attempt)
        extend(0, b"always changing")

    async with opened(config(swtpm.tcti, tmp_path), quote_race_hook=race) as tpm:
        with pytest.raises(PcrsKeptChanging) as caught:
            await tpm.quote(NONCE, MASK)
    assert caught.value.attempts == QUOTE_ATTEMPTS
    assert attempts == list(range(QUOTE_ATTEMPTS))


async def test_quote_rejects_bad_arguments(swtpm: Swtpm, tmp_path: Path) -> None:
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        with pytest.raises(ValueError, match="nonce"):
            await tpm.quote(b"n" * 65, MASK)
        with pytest.raises(ValueError, match="mask"):
            await tpm.quote(NONCE, 1 << 24)


def _port_with_no_listener() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "tcti_format",
    ["swtpm:host=127.0.0.1,port={port}", "nosuchtcti:whatever", "device:/nonexistent/tpmrm0"],
)
async def test_bad_tcti_is_a_tcti_error(tmp_path: Path, tcti_format: str) -> None:
    tcti = tcti_format.format(port=_port_with_no_listener())
    with trio.fail_after(BAD_TCTI_DEADLINE_S):
        with pytest.raises(TctiError) as caught:
            await PytssTpm.open(TpmConfig(tcti=tcti, data_dir=tmp_path))
    assert caught.value.tcti == tcti
    assert tcti in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_quote_of_another_bank_uses_the_ak_hash_for_pcr_digest(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    """A sha1-bank quote by a sha256 AK: pcrDigest is sha256 over sha1 values (Part 3 §18.4)."""
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        ak = await tpm.ak()
        await tpm.bind_data_pcr(NK_PUBLIC_PEM)
        quote = await tpm.quote(NONCE, MASK, "sha1")
    checked = tpm2_checkquote(tmp_path / "checkquote", quote, ak.public, NONCE, "sha256")
    assert checked.returncode == 0, checked.stderr


async def test_software_tpm_warns_loudly_once(
    swtpm: Swtpm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.tpm")
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        await tpm.quote(NONCE, MASK)
        await tpm.quote(NONCE, MASK)
    insecure = [r for r in caplog.records if r.getMessage().startswith("INSECURE")]
    assert len(insecure) == 3  # the three lines rust-keylime prints, once
    assert swtpm.tcti in insecure[0].getMessage()
