"""The blocking half of the IMA reader: one open log file, its offsets and its checkpoints.

Semantics follow the Keylime agent API's ``ima_ml_entry`` (rust-keylime
keylime/src/ima/measurement_list.rs, MeasurementList::read; served by
keylime-agent/src/quotes_handler.rs as ``ima_measurement_list`` and
``ima_measurement_list_entry``):

* entry ``N`` with 0 <= N < count: the text of entries N.. and ``start`` = N;
* ``N`` == count: no text yet, ``start`` = N (the verifier asks again later);
* ``N`` > count: the whole log, ``start`` = 0.

Unlike upstream, a last line without its newline (the kernel or an emulator still writing it)
is neither returned nor counted until it is complete, so every slice is whole entries.

Each call first reads what was appended since the last call (``_refresh``), so its cost grows
with the new entries, not with the log.  A log that is not the one indexed any more (reboot,
kexec, a test truncating it) is recognised because the first line or the last indexed line
changed (securityfs reports size 0, so the size alone cannot tell); the index is then reset.
Nothing here is thread-safe: :class:`edge_agent.ima.log_reader.ImaLogReader` serialises calls.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import BinaryIO

from edge_agent.ima.checkpoints import CHECKPOINT_SPACING_ENTRIES, MAX_CHECKPOINTS, Checkpoints

log = logging.getLogger(__name__)

# Names in the log are raw bytes (ima_fs.c prints them unescaped); surrogateescape keeps any
# non-UTF-8 byte, and attest_protocol.ima.fields.encode_name turns them back into the same bytes.
TEXT_ENCODING = "utf-8"
TEXT_ERRORS = "surrogateescape"


@dataclasses.dataclass(frozen=True)
class ImaSlice:
    """What one request returns: entries ``start``.. as ``text``; ``count`` entries in all.

    ``count`` is also the number to ask for next time (``ima_ml_entry``).
    """

    start: int
    text: str
    count: int


class ImaLogFile:
    """Owns ``file`` (opened in binary mode by the caller, before any privilege drop)."""

    def __init__(
        self,
        file: BinaryIO,
        *,
        spacing: int = CHECKPOINT_SPACING_ENTRIES,
        max_checkpoints: int = MAX_CHECKPOINTS,
    ) -> None:
        self._file = file
        self._checkpoints = Checkpoints(spacing, max_checkpoints)
        self._count = 0  # complete entries indexed
        self._end = 0  # offset just after the last complete entry
        self._first = b""  # the first line, newline included
        self._last_start = 0  # offset of the last complete entry
        self._last = b""  # that entry's line, newline included

    @property
    def checkpoints(self) -> Checkpoints:
        return self._checkpoints

    def close(self) -> None:
        self._file.close()

    def read_from(self, entry: int) -> ImaSlice:
        """Entries ``entry``.. as in the module docstring; blocking."""
        if entry < 0:
            raise ValueError(f"entry number must be >= 0, not {entry}")
        old_count, tail = self._refresh()
        if entry == self._count:
            return ImaSlice(entry, "", self._count)
        if entry > self._count:
            entry = 0
        if entry >= old_count:
            # The request starts in what was just read: no second read.
            data = tail[_skip_lines(tail, 0, entry - old_count) :]
        else:
            cp_entry, cp_offset = self._checkpoints.nearest(entry)
            self._file.seek(cp_offset)
            data = _read_exactly(self._file, self._end - cp_offset)
            data = data[_skip_lines(data, 0, entry - cp_entry) :]
        return ImaSlice(entry, data.decode(TEXT_ENCODING, TEXT_ERRORS), self._count)

    def _refresh(self) -> tuple[int, bytes]:
        """Index entries appended since the last call: (count before, their complete lines)."""
        data = self._read_since_last()
        if data is None:
            log.warning("IMA log %r was replaced or shrank; re-indexing it", self._name())
            self._reset()
            self._file.seek(0)
            data = self._file.read()
        old_count = self._count
        complete = data.rfind(b"\n") + 1
        data = data[:complete]
        if not data:
            return old_count, data
        self._index(data)
        if old_count == 0:
            self._first = data[: data.find(b"\n") + 1]
        self._last_start = self._end + data.rfind(b"\n", 0, complete - 1) + 1
        self._last = data[self._last_start - self._end :]
        self._end += complete
        return old_count, data

    def _read_since_last(self) -> bytes | None:
        """The bytes after the indexed end, or None if this is no longer the indexed log.

        One read from the last indexed line on both checks that line and fetches what follows.
        """
        if self._count:
            self._file.seek(0)
            if self._file.read(len(self._first)) != self._first:
                return None
        self._file.seek(self._last_start)
        data = self._file.read()
        if not data.startswith(self._last):
            return None
        return data[len(self._last) :]

    def _index(self, data: bytes) -> None:
        """Count the lines of ``data`` (all complete) and record checkpoints among them."""
        pos, entry, cps = 0, self._count, self._checkpoints
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            if cps.wants(entry):
                cps.add(entry, self._end + pos)
            pos, entry = nl + 1, entry + 1
        self._count = entry

    def _reset(self) -> None:
        self._checkpoints.reset()
        self._count = self._end = self._last_start = 0
        self._first = self._last = b""

    def _name(self) -> str:
        return str(getattr(self._file, "name", "<IMA log>"))


def _skip_lines(data: bytes, pos: int, lines: int) -> int:
    """The offset in ``data`` just after ``lines`` more newlines from ``pos``."""
    for _ in range(lines):
        pos = data.index(b"\n", pos) + 1
    return pos


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        # The log changed between the refresh and this read (it cannot, under the reader's
        # lock, unless the file was replaced underneath us).
        raise OSError(f"IMA log: short read ({len(data)} of {size} bytes)")
    return data


def open_log(path: str | os.PathLike[str]) -> BinaryIO:
    """Open the log for reading; done once at start, before dropping privileges."""
    return open(path, "rb")
