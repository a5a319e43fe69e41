"""Real Keylime 7.14.3's verifier and limelet-verifier on one simulated fleet, alternating.

For each fleet size N and quote interval: start Keylime's verifier, start a fleet of N agents
(bench/fleet) trusting its CA, enrol every agent as the tenant would, let it run for a
window, measure; stop it; start limelet-verifier on a copy of the same certificates, enrol
the same fleet, measure the same way; stop; close the fleet.  Figures per run:

* attestations/s: quotes the fleet served during the window, divided by its length;
* verifier CPU ms per attestation: utime+stime over the verifier's process tree (/proc);
* per-agent interval p50/p95: time between one agent's consecutive quotes, against the
  configured interval;
* verifier memory per agent: Pss of its tree after enrolment minus before, divided by N;
* enrolment: from the first POST until every agent has had its first partial quote (V
  delivered, polling under way);
* admin API under load: GET /v2.1/agents/{id} and GET /v2.1/agents/?bulk=1, p50/p99, failures;
* failed agents: those that served no quote during the window, and the states the verifier
  reports at the end;
* the load average at start and end, since the machine is shared.

Usage: ``python -m bench.verifier_fleet --agents 200,1000 --intervals 2,0 --label baseline``;
``--keylime-max N`` skips Keylime above N agents (its runs are slow; the table says so).
Results are appended to bench/results/verifier_fleet.json and the markdown table
bench/results/verifier_fleet.md is rewritten from all recorded runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.fleet import identity
from bench.fleet.admin_probe import percentile, probe_admin
from bench.fleet.fleet import Fleet, enrol_body
from bench.fleet.procstat import cpu_seconds, pss_bytes
from bench.fleet.report import write_markdown
from bench.fleet.verifiers import RunningVerifier, admin_context, keylime_verifier, limelet_verifier

RESULTS = Path(__file__).resolve().parent / "results" / "verifier_fleet.json"
ENROL_CONCURRENCY = 32
SETTLE_SECONDS = 3.0
STATS_POLL_SECONDS = 2.0


async def _enrol(verifier: RunningVerifier, fleet: Fleet) -> int:
    """POST every agent; the number of POSTs that failed."""
    ctx, failed = admin_context(verifier.tls_dir), 0
    limit = trio.Semaphore(ENROL_CONCURRENCY)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal failed
        async with limit:
            body = enrol_body(index, fleet.material, ("127.0.0.1", verifier.port), fleet.port)
            try:
                r = await client.post(f"/v2.1/agents/{identity.agent_id(index)}", json=body)
                failed += r.status_code != 200
            except httpx.HTTPError:
                failed += 1

    async with httpx.AsyncClient(base_url=verifier.url, verify=ctx, timeout=120.0) as client:
        async with trio.open_nursery() as nursery:
            for index in range(fleet.n):
                nursery.start_soon(one, client, index)
    return failed


def _wait_enrolled(fleet: Fleet, since: float, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        firsts = fleet.stats()["first_partial"].values()
        done = [t for t in firsts if t is not None and t >= since]
        if len(done) == fleet.n or time.monotonic() > deadline:
            last = max(done) if len(done) == fleet.n else None
            return {
                "enrolled": len(done),
                "enrol_seconds": None if last is None else round(last - since, 2),
            }
        time.sleep(STATS_POLL_SECONDS)


async def _final_states(verifier: RunningVerifier) -> dict[str, int]:
    ctx = admin_context(verifier.tls_dir)
    try:
        async with httpx.AsyncClient(verify=ctx, timeout=120.0) as client:
            body = (await client.get(f"{verifier.url}/v2.1/agents/?bulk=1")).json()["results"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {f"unreadable: {type(exc).__name__}": 1}
    return dict(Counter(str(v.get("operational_state")) for v in body.values()))


def _interval_figures(intervals: list[float], configured: float) -> dict[str, Any]:
    ordered = sorted(intervals)
    if not ordered:
        return {"interval_p50_s": None, "interval_p95_s": None, "p95_over_configured": None}
    p95 = percentile(ordered, 0.95)
    return {
        "interval_p50_s": round(statistics.median(ordered), 3),
        "interval_p95_s": round(p95, 3),
        "p95_over_configured": round(p95 / configured, 2) if configured else None,
    }


def measure(
    verifier: RunningVerifier, fleet: Fleet, interval: float, window: float
) -> dict[str, Any]:
    roots = [verifier.pid]
    pss_before = pss_bytes(roots)
    fleet.reset()
    since = time.time()
    post_failures = trio.run(_enrol, verifier, fleet)
    posted = time.time() - since
    enrolment = _wait_enrolled(fleet, since, timeout=60.0 + fleet.n * 0.1)
    time.sleep(SETTLE_SECONDS)
    fleet.reset()
    load_start, cpu_start, sim_start = (
        os.getloadavg(),
        cpu_seconds(roots),
        fleet.stats()["cpu_seconds"],
    )
    started = time.monotonic()
    ids = [identity.agent_id(i) for i in range(fleet.n)]
    admin = trio.run(probe_admin, verifier.url, admin_context(verifier.tls_dir), ids, window)
    elapsed = time.monotonic() - started
    cpu, stats = cpu_seconds(roots) - cpu_start, fleet.stats()
    quotes = stats["quotes"]
    return {
        "verifier": verifier.name,
        "agents": fleet.n,
        "interval_s": interval,
        "window_s": round(elapsed, 1),
        "attestations": quotes,
        "att_per_s": round(quotes / elapsed, 1),
        "cpu_ms_per_att": round(1000 * cpu / quotes, 2) if quotes else None,
        "cpu_cores_used": round(cpu / elapsed, 2),
        "simulator_cpu_ms_per_att": round(1000 * (stats["cpu_seconds"] - sim_start) / quotes, 2)
        if quotes
        else None,
        **_interval_figures(stats["intervals"], interval),
        "rss_kib_per_agent": round((pss_bytes(roots) - pss_before) / 1024 / fleet.n, 1),
        "rss_mib_total": round(pss_bytes(roots) / 2**20, 1),
        "post_seconds": round(posted, 2),
        "post_failures": post_failures,
        **enrolment,
        "admin": admin,
        "silent_agents": stats["silent"],
        "final_states": trio.run(_final_states, verifier),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }


def run_size(n: int, interval: float, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """Keylime first (it generates the certificates both use), then limelet, one fleet."""
    runs: list[dict[str, Any]] = []
    tls, fleet = root / "tls", None
    try:
        with keylime_verifier(root / "keylime", interval) as keylime:
            shutil.copytree(keylime.tls_dir, tls)
            fleet = Fleet.start(n, args.workers, root / "fleet", [tls / "cacert.crt"])
            if n <= args.keylime_max:
                runs.append(measure(keylime, fleet, interval, args.window))
                print(json.dumps(runs[-1]), flush=True)
        extra = tuple(args.limelet_option)
        with limelet_verifier(root / "limelet", tls, interval, extra) as limelet:
            runs.append({**measure(limelet, fleet, interval, args.window), "options": extra})
            print(json.dumps(runs[-1]), flush=True)
    finally:
        if fleet is not None:
            fleet.close()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="200,1000")
    parser.add_argument("--intervals", default="2,0")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keylime-max", type=int, default=1000)
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--only-limelet", action="store_true")
    parser.add_argument(
        "--limelet-option",
        action="append",
        default=[],
        metavar="'KEY = VALUE'",
        help="a TOML line added to limelet's config, e.g. 'max_in_flight = 64' (repeatable)",
    )
    args = parser.parse_args()
    if args.only_limelet:
        args.keylime_max = -1
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    for n in (int(x) for x in args.agents.split(",")):
        for interval in (float(x) for x in args.intervals.split(",")):
            with tempfile.TemporaryDirectory(prefix="verifier-fleet-") as tmp:
                for run in run_size(n, interval, args, Path(tmp)):
                    run["label"] = args.label
                    run["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
                        timespec="seconds"
                    )
                    recorded["runs"].append(run)
                    RESULTS.write_text(json.dumps(recorded, indent=1) + "\n")
                    write_markdown(recorded, RESULTS.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
