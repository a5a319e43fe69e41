"""The incremental IMA reader on temporary log files: Keylime's ima_ml_entry semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.lowlevel

from attest_protocol.ima import parse_ima_log
from edge_agent.ima import ImaLogOpenError, ImaLogReader, ImaSlice
from tests.agent_ima.support import append, lines, rewrite
from tools.ima_emulator import measurement_line

LOG_ENTRIES = 20
SMALL_SPACING = 3
CONCURRENT_REQUESTS = 30


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "ascii_runtime_measurements"
    path.write_text("".join(lines(LOG_ENTRIES)), encoding="utf-8")
    return path


def expected(all_lines: list[str], n: int) -> ImaSlice:
    """What Keylime's agent answers for ``n`` (rust-keylime MeasurementList::read)."""
    count = len(all_lines)
    if n > count:
        n = 0
    return ImaSlice(n, "".join(all_lines[n:]), count)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 9, 10, 19, 20, 21, 1000])
async def test_first_request_for_any_entry(log_path: Path, n: int) -> None:
    async with _reader(log_path) as reader:
        assert await reader.read_from(n) == expected(lines(LOG_ENTRIES), n)


def _reader(path: Path) -> ImaLogReader:
    return ImaLogReader(path.open("rb"), spacing=SMALL_SPACING)


async def test_every_entry_from_a_warm_reader(log_path: Path) -> None:
    all_lines = lines(LOG_ENTRIES)
    async with _reader(log_path) as reader:
        for n in [*range(LOG_ENTRIES + 3), 0, LOG_ENTRIES]:
            assert await reader.read_from(n) == expected(all_lines, n)


async def test_new_entries_are_served_from_the_requested_one(log_path: Path) -> None:
    async with ImaLogReader.open(log_path) as reader:
        first = await reader.read_from(0)
        assert (first.start, first.count) == (0, LOG_ENTRIES)
        new = lines(5, first=LOG_ENTRIES)
        append(log_path, "".join(new))
        got = await reader.read_from(first.count)
        assert got == ImaSlice(LOG_ENTRIES, "".join(new), LOG_ENTRIES + 5)
        assert await reader.read_from(got.count) == ImaSlice(got.count, "", got.count)


async def test_half_written_last_line_waits_until_complete(log_path: Path) -> None:
    line = measurement_line("/bin/late", b"late") + "\n"
    append(log_path, line[:40])
    async with _reader(log_path) as reader:
        assert await reader.read_from(LOG_ENTRIES) == ImaSlice(LOG_ENTRIES, "", LOG_ENTRIES)
        whole = await reader.read_from(0)
        assert whole.count == LOG_ENTRIES
        assert whole.text.endswith("\n")
        assert line[:40] not in whole.text
        append(log_path, line[40:])
        assert await reader.read_from(LOG_ENTRIES) == ImaSlice(LOG_ENTRIES, line, LOG_ENTRIES + 1)


@pytest.mark.parametrize(
    ("new_log", "n", "start"),
    [
        # Shorter after a reboot: the old next entry is past the end, so the whole log.
        (lines(4, tag="boot2-"), LOG_ENTRIES, 0),
        # Same first lines but cut short: the indexed end is gone.
        (lines(LOG_ENTRIES - 6), LOG_ENTRIES, 0),
        # Same first line, then different and longer: the last indexed line changed.
        (lines(1) + lines(LOG_ENTRIES + 5, first=1, tag="boot2-"), LOG_ENTRIES, LOG_ENTRIES),
    ],
)
async def test_replaced_log_resets_the_index(
    log_path: Path, new_log: list[str], n: int, start: int
) -> None:
    async with _reader(log_path) as reader:
        assert (await reader.read_from(LOG_ENTRIES)).count == LOG_ENTRIES
        rewrite(log_path, "".join(new_log))
        assert await reader.read_from(n) == expected(new_log, n)
        assert (await reader.read_from(start)).start == start
        # The index is rebuilt for the new log: a middle entry still reads right.
        assert await reader.read_from(2) == expected(new_log, 2)


async def test_checkpoints_stay_bounded_and_reads_stay_right(tmp_path: Path) -> None:
    path = tmp_path / "big"
    all_lines = lines(2000)
    path.write_text("".join(all_lines), encoding="utf-8")
    reader = ImaLogReader(path.open("rb"), spacing=4, max_checkpoints=8)
    async with reader:
        assert (await reader.read_from(2000)).count == 2000
        assert len(reader.sync.checkpoints) <= 8
        for n in (0, 1, 255, 256, 1001, 1999):
            assert await reader.read_from(n) == expected(all_lines, n)


async def test_concurrent_requests_never_interleave(log_path: Path) -> None:
    results: list[tuple[int, ImaSlice]] = []

    async with _reader(log_path) as reader:

        async def request(n: int) -> None:
            results.append((n, await reader.read_from(n)))

        async def grow() -> None:
            for batch in range(5):
                append(log_path, "".join(lines(4, first=LOG_ENTRIES + 4 * batch)))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(grow)
            for i in range(CONCURRENT_REQUESTS):
                nursery.start_soon(request, i % (LOG_ENTRIES + 25))

    final = lines(LOG_ENTRIES + 20)
    assert len(results) == CONCURRENT_REQUESTS
    for n, got in results:
        # Each answer is a consistent snapshot of a prefix of the growing log.
        assert got == expected(final[: got.count], n)


async def test_non_utf8_names_survive_for_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "ml"
    name = b"/tmp/caf\xe9".decode("utf-8", "surrogateescape")
    line = measurement_line(name, b"data") + "\n"
    path.write_bytes(line.encode("utf-8", "surrogateescape"))
    async with _reader(path) as reader:
        got = await reader.read_from(0)
    (entry,) = parse_ima_log(got.text)
    assert entry.path == name
    entry.validate_template_hash()


async def test_open_errors(tmp_path: Path) -> None:
    assert ImaLogReader.open_if_present(tmp_path / "absent") is None
    with pytest.raises(ImaLogOpenError) as info:
        ImaLogReader.open_if_present(tmp_path)
    assert info.value.path == str(tmp_path)


async def test_negative_entry_is_a_caller_bug(log_path: Path) -> None:
    async with _reader(log_path) as reader:
        with pytest.raises(ValueError, match=">= 0"):
            await reader.read_from(-1)
