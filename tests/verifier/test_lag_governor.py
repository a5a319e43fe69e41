"""The in-flight cap that follows the event loop's lag (verifier_lite/lag_governor.py)."""

from __future__ import annotations

import math
import time

import trio
import trio.lowlevel

from verifier_lite.lag_governor import MIN_IN_FLIGHT, LagGovernor

TARGET = 0.025


def _governor(total: float, borrowed: int, ceiling: float = math.inf) -> LagGovernor:
    limiter = trio.CapacityLimiter(total)
    for i in range(borrowed):
        limiter.acquire_on_behalf_of_nowait(i)
    return LagGovernor(limiter, TARGET, ceiling)


async def test_late_loop_lowers_the_cap_below_what_is_in_flight() -> None:
    governor = _governor(math.inf, 500)
    governor.adjust(0.2)
    assert governor.limiter.total_tokens == 400
    governor.adjust(0.2)  # still late: lower again, from what it allowed
    assert governor.limiter.total_tokens == 400  # 500 still hold tokens: 0.8 * 500, capped
    assert governor.lowest == 400


async def test_the_cap_never_falls_below_the_floor_or_rises_above_the_ceiling() -> None:
    governor = _governor(math.inf, 5)
    governor.adjust(1.0)
    assert governor.limiter.total_tokens == MIN_IN_FLIGHT
    fixed = _governor(8, 5, ceiling=8)  # max_in_flight = 8
    fixed.adjust(1.0)
    assert fixed.limiter.total_tokens == 8


async def test_a_prompt_loop_grows_the_cap_back_to_none() -> None:
    governor = _governor(100, 100)
    governor.adjust(0.001)
    assert governor.limiter.total_tokens == 126  # a quarter more, while it still binds
    governor.adjust(TARGET * 0.75)  # between half the target and the target: hold
    assert governor.limiter.total_tokens == 126
    idle = _governor(100, 10)  # the cap no longer binds: lifted at once
    idle.adjust(0.001)
    assert idle.limiter.total_tokens == math.inf


async def test_a_hogged_loop_is_throttled_and_released_in_real_time() -> None:
    governor = _governor(math.inf, 200)
    async with trio.open_nursery() as nursery:
        await nursery.start(governor.serve)
        with trio.fail_after(30):
            while governor.limiter.total_tokens == math.inf:
                time.sleep(0.1)  # noqa: ASYNC251 - blocks the loop: each probe wakes 100 ms late
                await trio.lowlevel.checkpoint()
        assert governor.limiter.total_tokens < 200
        for i in range(200):
            governor.limiter.release_on_behalf_of(i)  # the quotes in flight finish
        with trio.fail_after(30):  # a free loop: the cap lifts (one prompt probe suffices)
            while governor.limiter.total_tokens != math.inf:  # noqa: ASYNC110 - a polled value
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
