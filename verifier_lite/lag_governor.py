"""Keeps the verifier's event loop responsive when its agents answer faster than it can check.

Every polling task and every admin request share one Trio loop.  When a thousand agents all
answer at once (a fleet at quote interval 0, or everyone's first quote after a restart),
each pass of the scheduler runs a step of every one of them, and an admin request, which
needs a few dozen steps, took 10-18 s (bench/results/verifier_fleet.md).  A fixed cap on
quotes in flight fixes that but throttles a fleet of real TPMs, whose quotes spend hundreds
of milliseconds in the TPM while the loop is idle.

So the cap follows the loop's lag instead: a probe sleeps ``PROBE_SECONDS`` and measures how
late it wakes.  Later than ``target`` seconds, fewer quote requests may start (a fifth fewer
than are in flight, never fewer than ``MIN_IN_FLIGHT``); under half the target, the cap
grows again by a quarter, and once it no longer binds it returns to ``ceiling``
(``max_in_flight``, or none).  Tasks already in flight keep their tokens; only new quote
requests wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

PROBE_SECONDS = 0.05
DEFAULT_TARGET_LAG_SECONDS = 0.012  # bench: 25 ms left the admin p99 at 1.1 s, 12 ms 0.57 s
MIN_IN_FLIGHT = 16
_SHRINK = 0.8
_GROW = 1.25


@dataclass
class LagGovernor:
    limiter: trio.CapacityLimiter
    target: float = DEFAULT_TARGET_LAG_SECONDS
    ceiling: float = math.inf  # max_in_flight, or math.inf for no fixed cap
    lowest: float = math.inf  # the smallest cap it has set, for the benchmark and tests

    def adjust(self, lag: float) -> None:
        """One probe's verdict: ``lag`` seconds late."""
        total, borrowed = self.limiter.total_tokens, self.limiter.borrowed_tokens
        if lag > self.target:
            new: float = min(self.ceiling, max(MIN_IN_FLIGHT, min(total, int(borrowed * _SHRINK))))
        elif lag < self.target / 2 and total < self.ceiling:
            grown = total * _GROW + 1
            new = self.ceiling if borrowed < total / 2 or grown >= self.ceiling else int(grown)
        else:
            return
        if new != total:
            self.limiter.total_tokens = new
            self.lowest = min(self.lowest, new)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            start = trio.current_time()
            await trio.sleep(PROBE_SECONDS)
            self.adjust(trio.current_time() - start - PROBE_SECONDS)
