"""The IMA emulator on swtpm: its log replays to exactly PCR 10 in every bank."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest_protocol.ima import Pcr10Replay, parse_ima_log
from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.ima import ImaLogReader
from edge_agent.tpm import esys_ops
from tools.ima_emulator import ImaEmulator, main
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

BANKS = (TpmAlg.SHA1, TpmAlg.SHA256)
# A signature_v2_hdr (type 3, version 2, sha256, key id, size 4) and 4 signature bytes.
SIGNATURE = bytes.fromhex("030204aabbccdd0004") + b"\x01\x02\x03\x04"


def pcr10(tcti: str) -> dict[TpmAlg, bytes]:
    esys, _vendor = esys_ops.open_esapi(tcti)
    try:
        return {bank: esys_ops.pcr_read(esys, bank, [10])[10] for bank in BANKS}
    finally:
        esys.close()


def assert_log_matches_tpm(log: Path, tcti: str, entries: int) -> None:
    parsed = parse_ima_log(log.read_text(encoding="utf-8"))
    assert len(parsed) == entries
    for entry in parsed:
        entry.validate_template_hash()
    assert pcr10(tcti) == {bank: Pcr10Replay(bank).feed(parsed) for bank in BANKS}


async def test_log_replays_to_pcr10_in_both_banks(swtpm: Swtpm, tmp_path: Path) -> None:
    log = tmp_path / "ascii_runtime_measurements"
    emulator = ImaEmulator(swtpm.tcti, log)
    try:
        assert set(BANKS) <= set(emulator.banks)
        first = emulator.boot_aggregate()
        assert (first.path, first.digest_alg) == ("boot_aggregate", "sha256")
        for i in range(5):
            emulator.measure(f"/usr/bin/tool{i}", b"contents %d" % i)
        emulator.template = "ima-sig"
        emulator.measure("/usr/lib/signed.so", b"signed", signature=SIGNATURE)
        emulator.measure("/usr/lib/unsigned.so", b"unsigned")
    finally:
        emulator.close()
    assert_log_matches_tpm(log, swtpm.tcti, 8)
    async with ImaLogReader.open(log) as reader:
        got = await reader.read_from(6)
    (signed, unsigned) = parse_ima_log(got.text, first_lineno=7)
    assert (signed.signature, unsigned.signature) == (SIGNATURE, b"")


def test_cli_measures_files(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for name in ("a", "b"):
        files.append(tmp_path / name)
        files[-1].write_bytes(name.encode() * 100)
    log = tmp_path / "ml"
    main(["--tcti", swtpm.tcti, "--log", str(log), "--boot-aggregate", *map(str, files)])
    assert "3 entries appended" in capsys.readouterr().out
    assert_log_matches_tpm(log, swtpm.tcti, 3)
    assert parse_ima_log(log.read_text(encoding="utf-8"))[1].path == str(files[0].resolve())
