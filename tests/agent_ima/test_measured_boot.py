"""The measured-boot log reader: bytes as they are, None when absent, read fresh each time."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.ima import MeasuredBootLogError, MeasuredBootLogReader


async def test_reads_the_log_fresh_each_time(tmp_path: Path) -> None:
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(b"\x00\x01event log")
    reader = MeasuredBootLogReader(path)
    assert await reader.read() == b"\x00\x01event log"
    path.write_bytes(b"other")
    assert await reader.read() == b"other"


async def test_absent_log_is_none(tmp_path: Path) -> None:
    assert await MeasuredBootLogReader(tmp_path / "absent").read() is None


async def test_unreadable_log_raises_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(MeasuredBootLogError) as info:
        await MeasuredBootLogReader(tmp_path).read()
    assert info.value.path == str(tmp_path)
