"""Exponential backoff: a pure schedule and the retry loop that sleeps through it.

rust-keylime retries each registrar request with ``reqwest_retry``'s ExponentialBackoff,
without jitter, bounded by ``exponential_backoff_max_delay`` (keylime/src/resilient_client.rs;
the options in keylime-agent.conf): retry *n* (from 0) waits
``min(initial_delay * 2**n, max_delay)``, and after ``max_retries`` retries the request fails.
With the defaults (10 s, 5 retries, 300 s) that is 10, 20, 40, 80, 160 s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

__all__ = ["BackoffPolicy", "backoff_schedule", "retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MS_PER_S = 1000
_GROWTH_FACTOR = 2


def backoff_schedule(
    initial_delay_ms: int, max_retries: int, max_delay_ms: int
) -> tuple[float, ...]:
    """The waits in seconds before retry 1, 2, ... ``max_retries``."""
    if initial_delay_ms < 0 or max_retries < 0 or max_delay_ms < 0:
        raise ValueError("backoff delays and retry count must not be negative")
    delays = []
    for attempt in range(max_retries):
        # Cap before multiplying further so a large max_retries cannot grow a huge integer.
        delay_ms = min(initial_delay_ms * _GROWTH_FACTOR ** min(attempt, 64), max_delay_ms)
        delays.append(delay_ms / MS_PER_S)
    return tuple(delays)


@dataclass(frozen=True)
class BackoffPolicy:
    """The three ``exponential_backoff_*`` options."""

    initial_delay_ms: int
    max_retries: int
    max_delay_ms: int

    def schedule(self) -> tuple[float, ...]:
        return backoff_schedule(self.initial_delay_ms, self.max_retries, self.max_delay_ms)


async def retry(
    operation: Callable[[], Awaitable[T]],
    schedule: tuple[float, ...],
    transient: tuple[type[Exception], ...],
    what: str,
) -> T:
    """Run ``operation``; on a ``transient`` error wait the next delay and run it again.

    When the schedule is used up, the last error propagates.  Other errors, and
    cancellation, propagate at once.
    """
    for number, delay in enumerate(schedule, start=1):
        try:
            return await operation()
        except transient as exc:
            log.warning(
                "%s failed: %s; retry %d of %d in %.1f s", what, exc, number, len(schedule), delay
            )
        await trio.sleep(delay)
    return await operation()
