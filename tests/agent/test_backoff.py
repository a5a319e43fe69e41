"""The backoff schedule (pure) and the retry loop in virtual time."""

from __future__ import annotations

import pytest
import trio

from edge_agent.backoff import BackoffPolicy, backoff_schedule, retry


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


@pytest.mark.parametrize(
    ("initial_ms", "retries", "max_ms", "expected"),
    [
        # rust-keylime's defaults: 10 s doubling, 5 retries, capped at 300 s.
        (10_000, 5, 300_000, (10.0, 20.0, 40.0, 80.0, 160.0)),
        (1_000, 6, 5_000, (1.0, 2.0, 4.0, 5.0, 5.0, 5.0)),
        (250, 1, 1_000, (0.25,)),
        (10_000, 0, 300_000, ()),
        (0, 3, 0, (0.0, 0.0, 0.0)),
    ],
)
def test_schedule(initial_ms: int, retries: int, max_ms: int, expected: tuple[float, ...]) -> None:
    assert backoff_schedule(initial_ms, retries, max_ms) == expected
    assert BackoffPolicy(initial_ms, retries, max_ms).schedule() == expected


def test_schedule_of_many_retries_stays_capped() -> None:
    delays = backoff_schedule(1, 500, 60_000)
    assert len(delays) == 500
    assert delays[-1] == 60.0


def test_negative_values_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        backoff_schedule(-1, 3, 10)


async def test_retry_waits_the_schedule_then_succeeds(autojump_clock: trio.abc.Clock) -> None:
    calls: list[float] = []

    async def operation() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise Flaky("not yet")
        return "done"

    start = trio.current_time()
    assert await retry(operation, (10.0, 20.0, 40.0), (Flaky,), "test") == "done"
    assert [round(t - start, 6) for t in calls] == [0.0, 10.0, 30.0]


async def test_retry_gives_up_with_the_last_error(autojump_clock: trio.abc.Clock) -> None:
    calls: list[float] = []

    async def operation() -> None:
        calls.append(trio.current_time())
        raise Flaky(f"attempt {len(calls)}")

    start = trio.current_time()
    with pytest.raises(Flaky, match="attempt 3"):
        await retry(operation, (1.0, 2.0), (Flaky,), "test")
    assert trio.current_time() - start == pytest.approx(3.0)
    assert len(calls) == 3


async def test_other_errors_are_not_retried(autojump_clock: trio.abc.Clock) -> None:
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise Fatal("no")

    with pytest.raises(Fatal):
        await retry(operation, (1.0, 2.0), (Flaky,), "test")
    assert calls == 1
