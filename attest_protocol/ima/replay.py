"""Replay IMA entries into PCR 10 of any bank, incrementally.

The kernel extends PCR 10 (CONFIG_IMA_MEASURE_PCR_IDX) of every allocated bank with each
entry's template data hashed in that bank's algorithm (ima_queue.c, ima_pcr_extend); a
violation entry extends all 0xff bytes.  The TPM extend is PCR := H(PCR || digest)
(TPM 2.0 Library Part 1, §17.2 "PCR Extend").

Reading the log and quoting PCR 10 are not atomic, so a quote may lag the log by some entries
(keylime/ima/ima.py, _process_measurement_list).  :meth:`Pcr10Replay.feed_until` finds the
first prefix of the log whose replay equals the quoted value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from cryptography.hazmat.primitives import hashes

from attest_protocol.ima.entry import ImaEntry
from attest_protocol.ima.errors import ImaPcrIndexError
from attest_protocol.keylime_facts import IMA_PCR
from attest_protocol.tpm2.constants import TpmAlg, digest_size, hash_for_alg


class Pcr10Replay:
    """Running value of PCR 10 in one bank; feed entries, read ``value``.

    ``start`` is the value before the first entry fed (all zeros after reset, or a value kept
    from an earlier, incremental attestation).  ``count`` is the number of entries fed.
    An entry for another PCR raises :class:`ImaPcrIndexError` and leaves the state unchanged.
    """

    def __init__(
        self, hash_alg: TpmAlg, start: Optional[bytes] = None, *, pcr: int = IMA_PCR
    ) -> None:
        size = digest_size(hash_alg)
        if start is None:
            start = bytes(size)
        if len(start) != size:
            raise ValueError(f"start value has {len(start)} bytes, {hash_alg.name} needs {size}")
        self.hash_alg = hash_alg
        self.pcr = pcr
        self._value = bytes(start)
        self._count = 0

    @property
    def value(self) -> bytes:
        return self._value

    @property
    def count(self) -> int:
        return self._count

    def extend(self, entry: ImaEntry) -> bytes:
        """Feed one entry; the new running value."""
        if entry.pcr != self.pcr:
            raise ImaPcrIndexError(entry.lineno, entry.pcr, self.pcr)
        ctx = hashes.Hash(hash_for_alg(self.hash_alg))
        ctx.update(self._value)
        ctx.update(entry.extend_digest(self.hash_alg))
        self._value = ctx.finalize()
        self._count += 1
        return self._value

    def feed(self, entries: Iterable[ImaEntry]) -> bytes:
        for entry in entries:
            self.extend(entry)
        return self._value

    def feed_until(self, entries: Iterable[ImaEntry], quoted: bytes) -> Optional[int]:
        """Feed ``entries`` up to the first point where the value equals ``quoted``.

        Returns ``count`` at that point (the current count if the value already matches,
        before any entry is fed), or ``None`` after feeding every entry without a match.
        Entries after the match are not fed, so the caller can keep them for the next quote.
        """
        if self._value == quoted:
            return self._count
        for entry in entries:
            if self.extend(entry) == quoted:
                return self._count
        return None

    def copy(self) -> Pcr10Replay:
        twin = Pcr10Replay(self.hash_alg, self._value, pcr=self.pcr)
        twin._count = self._count
        return twin


def replay_pcr10(
    entries: Iterable[ImaEntry], hash_alg: TpmAlg, start: Optional[bytes] = None
) -> bytes:
    """PCR 10 in bank ``hash_alg`` after extending ``entries`` from ``start`` (zeros)."""
    return Pcr10Replay(hash_alg, start).feed(entries)
