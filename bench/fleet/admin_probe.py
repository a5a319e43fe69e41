"""The admin API under load: a single-agent GET and a bulk GET, timed, every failure kept.

An operator's view of a busy verifier: does ``GET /v2.1/agents/{id}`` answer quickly, and
does ``GET /v2.1/agents/?bulk=1`` (every agent's status at once) answer at all?  Each probe
opens its own connection, as a tenant run does.
"""

from __future__ import annotations

import random
import ssl
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

SINGLE_EVERY_SECONDS = 0.5
BULK_EVERY_SECONDS = 3.0
PROBE_TIMEOUT_SECONDS = 30.0


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "count": len(ordered),
            "failed": len(self.failures),
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * percentile(ordered, 0.99), 1) if ordered else None,
            "max_ms": round(1000 * ordered[-1], 1) if ordered else None,
            "failures": self.failures[:5],
        }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _probe(url: str, ctx: ssl.SSLContext, samples: Samples) -> None:
    start = time.monotonic()
    try:
        async with httpx.AsyncClient(verify=ctx, timeout=PROBE_TIMEOUT_SECONDS) as client:
            response = await client.get(url)
        if response.status_code != 200:
            samples.failures.append(f"HTTP {response.status_code}")
            return
        response.json()
    except (httpx.HTTPError, ValueError) as exc:
        samples.failures.append(f"{type(exc).__name__}: {str(exc)[:80]}")
        return
    samples.latencies.append(time.monotonic() - start)


async def _every(seconds: float, url_of: Any, ctx: ssl.SSLContext, samples: Samples) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            nursery.start_soon(_probe, url_of(), ctx, samples)
            await trio.sleep(seconds)


async def probe_admin(
    base: str, ctx: ssl.SSLContext, agent_ids: list[str], duration: float
) -> dict[str, Any]:
    single, bulk = Samples(), Samples()
    with trio.move_on_after(duration):
        async with trio.open_nursery() as nursery:
            pick = lambda: f"{base}/v2.1/agents/{random.choice(agent_ids)}"  # noqa: E731, S311
            nursery.start_soon(_every, SINGLE_EVERY_SECONDS, pick, ctx, single)
            nursery.start_soon(
                _every, BULK_EVERY_SECONDS, lambda: f"{base}/v2.1/agents/?bulk=1", ctx, bulk
            )
    return {"single": single.summary(), "bulk": bulk.summary()}
