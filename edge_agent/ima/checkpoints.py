"""A bounded index of (entry number, byte offset) checkpoints into an IMA ASCII log.

Pure bookkeeping, no I/O: the reader (:mod:`edge_agent.ima.log_reader`) owns the file and tells
this index where entries start.  A checkpoint is kept for every ``spacing``-th entry only, so a
request for entry N seeks to the nearest checkpoint at or before N and skips fewer than
``spacing`` lines.  rust-keylime keeps a handful of (entries, file size) pairs instead
(keylime/src/ima/measurement_list.rs, MeasurementList::update/find), which only helps requests
near the end of the log.

Memory is bounded by ``max_checkpoints``: when the index is full, every other checkpoint is
dropped and the spacing doubles, so a log of any length costs at most that many pairs.
"""

from __future__ import annotations

import bisect

# One checkpoint every this many entries.  A kernel IMA line is ~100-300 bytes, so skipping at
# most 1023 lines after a seek reads well under 1 MiB while 1,000,000 entries need ~1000 pairs.
CHECKPOINT_SPACING_ENTRIES = 1024
# The most checkpoints kept; past this the spacing doubles (a log of 2**22 entries at the
# default spacing).  Two Python ints per checkpoint: a few hundred KiB at most.
MAX_CHECKPOINTS = 4096


class Checkpoints:
    """Start offsets of entries 0, s, 2s, ... (s = ``spacing``, which may grow).

    Entry 0 always starts at offset 0, so :meth:`nearest` always has an answer.
    """

    def __init__(
        self,
        spacing: int = CHECKPOINT_SPACING_ENTRIES,
        max_checkpoints: int = MAX_CHECKPOINTS,
    ) -> None:
        if spacing < 1:
            raise ValueError(f"checkpoint spacing must be >= 1, not {spacing}")
        if max_checkpoints < 2:
            raise ValueError(f"need room for at least 2 checkpoints, not {max_checkpoints}")
        self._initial_spacing = spacing
        self._max = max_checkpoints
        self.spacing = spacing
        self._entries: list[int] = [0]
        self._offsets: list[int] = [0]

    def __len__(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        """Forget everything (the log was replaced, e.g. after a reboot)."""
        self.spacing = self._initial_spacing
        self._entries = [0]
        self._offsets = [0]

    def wants(self, entry: int) -> bool:
        """Whether entry number ``entry`` is one to record with :meth:`add`."""
        return entry % self.spacing == 0 and entry > self._entries[-1]

    def add(self, entry: int, offset: int) -> None:
        """Record that ``entry`` starts at byte ``offset``; entries must be added in order."""
        if entry <= self._entries[-1] or offset <= self._offsets[-1]:
            raise ValueError(f"checkpoint ({entry}, {offset}) is not after the last one")
        if entry % self.spacing:
            return
        self._entries.append(entry)
        self._offsets.append(offset)
        if len(self._entries) > self._max:
            self._thin()

    def _thin(self) -> None:
        # Keep the multiples of the doubled spacing; entry 0 is one of them.
        self.spacing *= 2
        kept = [i for i, e in enumerate(self._entries) if e % self.spacing == 0]
        self._entries = [self._entries[i] for i in kept]
        self._offsets = [self._offsets[i] for i in kept]

    def nearest(self, entry: int) -> tuple[int, int]:
        """The last checkpoint (entry number, offset) at or before ``entry``."""
        i = bisect.bisect_right(self._entries, entry) - 1
        return self._entries[i], self._offsets[i]
