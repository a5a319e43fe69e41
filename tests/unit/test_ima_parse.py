"""IMA ASCII log parsing, template hashes and PCR 10 replay.

Expected template data is built here from the kernel's documented layout
(Documentation/security/IMA-templates.rst; ima_template_lib.c serialisation: a little-endian
u32 length before each field, ``algo:\\0digest`` for d-ng, NUL-terminated n-ng, the legacy
``ima`` template as raw digest + name padded to 256 bytes) and hashed with hashlib, apart
from the code under test.  One table drives the decode, encode and template-hash tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from pathlib import Path
from typing import Optional

import pytest

from attest_protocol.ima import (
    MAX_IMA_LINE_CHARS,
    FieldError,
    ImaEntry,
    ImaParseError,
    ImaPcrIndexError,
    ImaTemplateHashError,
    Pcr10Replay,
    format_ima_line,
    parse_ima_line,
    parse_ima_log,
    replay_pcr10,
)
from attest_protocol.tpm2.constants import TpmAlg
from tests.fixtures.keylime import run_in_keylime


def sha1(data: bytes) -> bytes:
    # SHA-1 is what the kernel logs template hashes in, not a security choice of ours.
    return hashlib.sha1(data, usedforsecurity=False).digest()


def u32_field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def ng_data(alg: str, digest: bytes, name: str, *blobs: bytes) -> bytes:
    out = u32_field(alg.encode() + b":\0" + digest) + u32_field(name.encode() + b"\0")
    return out + b"".join(u32_field(blob) for blob in blobs)


def legacy_data(digest: bytes, name: str) -> bytes:
    return digest + name.encode().ljust(256, b"\0")


def signature(sig: bytes) -> bytes:
    # signature_v2_hdr: type 3 (EVM_IMA_XATTR_DIGSIG), version 2, hash_algo 4 (sha256), keyid
    return struct.pack(">BBBIH", 3, 2, 4, 0x1234ABCD, len(sig)) + sig


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    template: str
    data_text: str  # template data as the kernel prints it
    template_data: bytes  # as the kernel hashes it
    digest_alg: str
    digest: bytes
    path: str
    signature: Optional[bytes] = None
    buffer: Optional[bytes] = None

    def line(self, template_hash: Optional[bytes] = None) -> str:
        if template_hash is None:
            template_hash = sha1(self.template_data)
        return f"10 {template_hash.hex()} {self.template} {self.data_text}"


SHA1_D = sha1(b"bash")
SHA256_D = hashlib.sha256(b"bash").digest()
MD5_D = hashlib.md5(b"bash", usedforsecurity=False).digest()  # legacy "ima" may carry MD5
SIG = signature(b"\x5a" * 256)
CMDLINE = b"root=/dev/vda1 ro ima_policy=tcb"

CASES = [
    Case("ima sha1", "ima", f"{SHA1_D.hex()} /usr/bin/bash",
         legacy_data(SHA1_D, "/usr/bin/bash"), "sha1", SHA1_D, "/usr/bin/bash"),
    Case("ima md5", "ima", f"{MD5_D.hex()} /init",
         legacy_data(MD5_D, "/init"), "md5", MD5_D, "/init"),
    Case("ima-ng sha256", "ima-ng", f"sha256:{SHA256_D.hex()} /usr/bin/bash",
         ng_data("sha256", SHA256_D, "/usr/bin/bash"), "sha256", SHA256_D, "/usr/bin/bash"),
    Case("ima-ng boot_aggregate", "ima-ng", f"sha1:{SHA1_D.hex()} boot_aggregate",
         ng_data("sha1", SHA1_D, "boot_aggregate"), "sha1", SHA1_D, "boot_aggregate"),
    Case("ima-ng name with spaces", "ima-ng", f"sha256:{SHA256_D.hex()} /tmp/a b",
         ng_data("sha256", SHA256_D, "/tmp/a b"), "sha256", SHA256_D, "/tmp/a b"),
    Case("ima-sig signed", "ima-sig", f"sha256:{SHA256_D.hex()} /usr/bin/ls {SIG.hex()}",
         ng_data("sha256", SHA256_D, "/usr/bin/ls", SIG), "sha256", SHA256_D, "/usr/bin/ls",
         signature=SIG),
    Case("ima-sig unsigned", "ima-sig", f"sha256:{SHA256_D.hex()} /usr/bin/ls ",
         ng_data("sha256", SHA256_D, "/usr/bin/ls", b""), "sha256", SHA256_D, "/usr/bin/ls",
         signature=b""),
    Case("ima-buf kexec-cmdline", "ima-buf",
         f"sha256:{hashlib.sha256(CMDLINE).hexdigest()} kexec-cmdline {CMDLINE.hex()}",
         ng_data("sha256", hashlib.sha256(CMDLINE).digest(), "kexec-cmdline", CMDLINE),
         "sha256", hashlib.sha256(CMDLINE).digest(), "kexec-cmdline", buffer=CMDLINE),
    Case("ima-buf empty buffer", "ima-buf",
         f"sha256:{hashlib.sha256(b'').hexdigest()} empty ",
         ng_data("sha256", hashlib.sha256(b"").digest(), "empty", b""),
         "sha256", hashlib.sha256(b"").digest(), "empty", buffer=b""),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_template_parses_to_its_fields(case: Case) -> None:
    entry = parse_ima_line(case.line(), 7)
    expected = ImaEntry(
        lineno=7,
        pcr=10,
        template_hash=sha1(case.template_data),
        template_name=case.template,
        digest_alg=case.digest_alg,
        digest=case.digest,
        path=case.path,
        signature=case.signature,
        buffer=case.buffer,
    )
    assert entry == expected
    assert not entry.is_violation


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_template_data_and_hash_match_the_kernel_layout(case: Case) -> None:
    entry = parse_ima_line(case.line(), 1)
    assert entry.template_data() == case.template_data
    entry.validate_template_hash()
    assert entry.extend_digest(TpmAlg.SHA256) == hashlib.sha256(case.template_data).digest()
    assert entry.extend_digest(TpmAlg.SHA1) == sha1(case.template_data)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_format_is_the_inverse_of_parse(case: Case) -> None:
    assert format_ima_line(parse_ima_line(case.line(), 1)) == case.line()


def test_sha256_template_hash_log() -> None:
    case = CASES[2]
    line = case.line(hashlib.sha256(case.template_data).digest())
    entry = parse_ima_line(line, 1, log_alg=TpmAlg.SHA256)
    entry.validate_template_hash()
    with pytest.raises(ImaParseError, match="template hash has 32 bytes"):
        parse_ima_line(line, 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_wrong_template_hash_is_reported_with_its_line(case: Case) -> None:
    bad = bytearray(sha1(case.template_data))
    bad[0] ^= 1
    entries = parse_ima_log(f"{CASES[3].line()}\n{case.line(bytes(bad))}\n")
    entries[0].validate_template_hash()
    with pytest.raises(ImaTemplateHashError) as info:
        entries[1].validate_template_hash()
    assert info.value.lineno == 2
    assert info.value.logged == bytes(bad)
    assert info.value.computed == sha1(case.template_data)


GOOD = CASES[2].line()
H20 = "00" * 20
# (id, line, a fragment of the reason, the column or -1)
BAD_LINES = [
    ("empty fields", "10 abc", "expected 4 fields", 6),
    ("garbage", "hello world", "expected 4 fields", 11),
    ("ng without name", f"10 {H20} ima-ng sha1:{H20}", "needs 2 fields", -1),
    ("sig without signature field", f"10 {H20} ima-sig sha1:{H20} /x", "needs 3 fields", -1),
    ("buf without buffer field", f"10 {H20} ima-buf sha1:{H20} name", "needs 3 fields", -1),
    ("non-hex template hash", f"10 {'zz' * 20} ima-ng sha1:{H20} /x", "template hash is not", 3),
    ("odd-length template hash", f"10 {H20}0 ima-ng sha1:{H20} /x", "template hash is not", 3),
    ("short template hash", f"10 {'00' * 19} ima-ng sha1:{H20} /x", "has 19 bytes", -1),
    ("whitespace inside hex", f"10 {H20} ima-ng sha1:{H20[:-2]}\t0 /x", "file digest is not", -1),
    ("non-hex file digest", f"10 {H20} ima-ng sha1:{'g' * 40} /x", "file digest is not", -1),
    (
        "unknown digest algorithm",
        f"10 {H20} ima-ng sha999:{H20} /x",
        "unknown digest algorithm",
        -1,
    ),
    ("digest size mismatch", f"10 {H20} ima-ng sha256:{H20} /x", "expected 32", -1),
    ("d-ng without algorithm", f"10 {H20} ima-ng {H20} /x", "no '<algo>:' prefix", -1),
    ("unknown template", f"10 {H20} ima-foo sha1:{H20} /x", "unknown template", -1),
    ("non-decimal pcr", f"x1 {H20} ima-ng sha1:{H20} /x", "not a decimal", 0),
    ("negative pcr", f"-1 {H20} ima-ng sha1:{H20} /x", "not a decimal", -1),
    ("pcr out of range", f"24 {H20} ima-ng sha1:{H20} /x", "out of range", 0),
    ("legacy sha256 digest", f"10 {H20} ima {'00' * 32} /x", "neither SHA-1 nor MD5", -1),
    ("legacy name too long", f"10 {H20} ima {H20} /{'a' * 255}", "longer than 255", -1),
    (
        "bad signature header",
        f"10 {H20} ima-sig sha1:{H20} /x {signature(b'ab').hex()}00",
        "announces 2 bytes",
        -1,
    ),
    ("short signature", f"10 {H20} ima-sig sha1:{H20} /x 0302", "shorter than its header", -1),
    ("signature with space", f"10 {H20} ima-sig sha1:{H20} /x 03 02", "signature is not", -1),
    ("non-hex buffer", f"10 {H20} ima-buf sha1:{H20} n xyz", "buffer is not", -1),
    (
        "over-long line",
        f"10 {H20} ima-ng sha1:{H20} /{'a' * MAX_IMA_LINE_CHARS}",
        "longer than 65536",
        -1,
    ),
]


@pytest.mark.parametrize(
    ("line", "reason", "column"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_bad_line_raises_with_its_lineno(
    line: str, reason: str, column: int, position: int
) -> None:
    lines = [GOOD, GOOD]
    lines.insert(position, line)
    with pytest.raises(ImaParseError) as info:
        parse_ima_log("\n".join(lines) + "\n", first_lineno=5)
    assert info.value.lineno == 5 + position
    assert info.value.line == line
    assert reason in info.value.reason
    if column >= 0:  # -1: the column is that of the template data, not pinned here
        assert info.value.column == column


def test_empty_line_is_an_error_not_skipped() -> None:
    with pytest.raises(ImaParseError, match="empty line") as info:
        parse_ima_log(f"{GOOD}\n\n{GOOD}\n")
    assert info.value.lineno == 2


def test_log_with_and_without_final_newline() -> None:
    assert parse_ima_log("") == []
    one = parse_ima_log(GOOD)
    assert one == parse_ima_log(GOOD + "\n")
    assert [e.lineno for e in parse_ima_log(f"{GOOD}\n{GOOD}", first_lineno=41)] == [41, 42]
    assert len(one) == 1


def test_direct_construction_is_validated() -> None:
    with pytest.raises(FieldError, match="signature"):
        ImaEntry(1, 10, bytes(20), "ima-ng", "sha1", bytes(20), "/x", signature=b"")
    with pytest.raises(FieldError, match="NUL"):
        ImaEntry(1, 10, bytes(20), "ima-ng", "sha1", bytes(20), "/x\0y")


VIOLATION = f"10 {H20} ima-ng sha256:{'00' * 32} /var/log/messages"


def test_tomtou_violation_extends_all_ff() -> None:
    entry = parse_ima_line(VIOLATION, 3)
    assert entry.is_violation
    entry.validate_template_hash()  # nothing to check: the kernel logs zeros
    assert entry.extend_digest(TpmAlg.SHA1) == b"\xff" * 20
    assert entry.extend_digest(TpmAlg.SHA256) == b"\xff" * 32


LOG_LINES = [CASES[3].line(), *(c.line() for c in CASES), VIOLATION]
LOG_TEXT = "\n".join(LOG_LINES) + "\n"


def hand_replay(name: str) -> list[bytes]:
    """Every running value of PCR 10, computed with hashlib from the case table."""
    size = hashlib.new(name).digest_size
    pcr = bytes(size)
    values = [pcr]
    datas = [CASES[3].template_data, *(c.template_data for c in CASES)]
    for measured in [*(hashlib.new(name, d).digest() for d in datas), b"\xff" * size]:
        pcr = hashlib.new(name, pcr + measured).digest()
        values.append(pcr)
    return values


@pytest.mark.parametrize(("alg", "name"), [(TpmAlg.SHA1, "sha1"), (TpmAlg.SHA256, "sha256")])
def test_replay_equals_hand_computed_chain(alg: TpmAlg, name: str) -> None:
    entries = parse_ima_log(LOG_TEXT)
    expected = hand_replay(name)
    assert replay_pcr10(entries, alg) == expected[-1]
    start = b"\x01" * len(expected[0])
    chained = start
    for entry in entries:
        chained = hashlib.new(name, chained + entry.extend_digest(alg)).digest()
    assert replay_pcr10(entries, alg, start) == chained


@pytest.mark.parametrize(("alg", "name"), [(TpmAlg.SHA1, "sha1"), (TpmAlg.SHA256, "sha256")])
def test_incremental_replay_equals_batch(alg: TpmAlg, name: str) -> None:
    entries = parse_ima_log(LOG_TEXT)
    state = Pcr10Replay(alg)
    seen = [state.value]
    for entry in entries:
        seen.append(state.extend(entry))
    assert seen == hand_replay(name)
    assert state.count == len(entries)
    split = Pcr10Replay(alg)
    split.feed(entries[:4])
    resumed = Pcr10Replay(alg, split.value)
    assert resumed.feed(entries[4:]) == state.value == replay_pcr10(entries, alg)


@pytest.mark.parametrize("lag", [0, 1, 5])
def test_feed_until_finds_the_first_matching_prefix(lag: int) -> None:
    entries = parse_ima_log(LOG_TEXT)
    quoted_at = len(entries) - lag
    quoted = hand_replay("sha256")[quoted_at]
    state = Pcr10Replay(TpmAlg.SHA256)
    assert state.feed_until(entries, quoted) == quoted_at
    assert state.count == quoted_at
    assert state.value == quoted


def test_feed_until_without_match_feeds_everything() -> None:
    entries = parse_ima_log(LOG_TEXT)
    state = Pcr10Replay(TpmAlg.SHA1)
    assert state.feed_until(entries, b"\x42" * 20) is None
    assert state.count == len(entries)
    assert Pcr10Replay(TpmAlg.SHA1).feed_until([], bytes(20)) == 0


def test_entry_for_another_pcr_is_not_replayed_silently() -> None:
    other = parse_ima_line("11" + GOOD[2:], 9)
    state = Pcr10Replay(TpmAlg.SHA256)
    with pytest.raises(ImaPcrIndexError) as info:
        state.feed([parse_ima_line(GOOD, 8), other])
    assert (info.value.lineno, info.value.pcr) == (9, 11)
    assert state.count == 1
    copy = state.copy()
    assert (copy.value, copy.count) == (state.value, state.count)
    with pytest.raises(ValueError, match="start value"):
        Pcr10Replay(TpmAlg.SHA256, bytes(20))


_KEYLIME_IMA = """
from keylime.common.algorithms import Hash
from keylime.ima import ast, ima
lines = payload["lines"]
checks = []
for line in lines:
    entry = ast.Entry(line, None, ima_hash_alg=Hash.SHA1, pcr_hash_alg=Hash.SHA1)
    tomtou = entry.ima_template_hash == Hash.SHA1.get_ff_hash()
    checks.append(tomtou or entry.ima_template_hash == Hash.SHA1.hash(entry.mode.bytes()))
pcr10 = {alg: ima._process_measurement_list(None, lines, Hash(alg))[0]
         for alg in ("sha1", "sha256")}
result = {"checks": checks, "pcr10": pcr10}
"""


@pytest.mark.interop
def test_template_hash_check_and_replay_agree_with_keylime(keylime_venv: Path) -> None:
    bad_hash = bytearray(sha1(CASES[5].template_data))
    bad_hash[-1] ^= 0x80
    lines = [*LOG_LINES, CASES[5].line(bytes(bad_hash))]
    ours = parse_ima_log("\n".join(lines))
    verdicts = []
    for entry in ours:
        try:
            entry.validate_template_hash()
            verdicts.append(True)
        except ImaTemplateHashError:
            verdicts.append(False)
    theirs = run_in_keylime(_KEYLIME_IMA, {"lines": lines})
    assert verdicts == theirs["checks"]
    assert verdicts.count(False) == 1
    assert theirs["pcr10"] == {
        "sha1": replay_pcr10(ours, TpmAlg.SHA1).hex(),
        "sha256": replay_pcr10(ours, TpmAlg.SHA256).hex(),
    }
