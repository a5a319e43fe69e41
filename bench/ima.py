"""Does serving new IMA entries cost the same on a huge log?  ``python -m bench.ima [--runs 31]``.

The verifier asks for the entries since its last poll (``ima_ml_entry``), so the agent's cost
per request should grow with the new entries, not with the log.  For a log of 100 and of
1,000,000 entries this measures the median time to serve the last 100 entries, freshly
appended, with ``read_from(count - 100)``:

* the 1,000,000-entry log is indexed once by a new reader (that cold full read, which also
  returns the whole log, is reported too), then each run appends 100 lines and serves them
  (the log grows by 100 per run, well under 1% over both modes);
* the 100-entry log is a fresh file and reader each run, so it stays 100 entries.

Timed twice: the blocking core (``ImaLogFile.read_from``) and the Trio request
(``ImaLogReader.read_from``: lock and worker thread too).  Lines are written with the IMA
emulator's formatting (no TPM).  Results go to bench/results/ima.json and stdout; the target
is a ratio (1M / 100) of at most 1.5 for the core.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from edge_agent.ima import ImaLogReader, ImaSlice
from tools.ima_emulator import measurement_line

BIG_LOG_ENTRIES = 1_000_000
SMALL_LOG_ENTRIES = 100
NEW_ENTRIES = 100
DEFAULT_RUNS = 31
WARMUP_RUNS = 3
TARGET_RATIO = 1.5
# Writing a million lines at once would hold ~150 MB of text; chunks keep it small.
WRITE_CHUNK_ENTRIES = 10_000
RESULTS = Path(__file__).parent / "results" / "ima.json"


def log_lines(first: int, count: int) -> Iterator[str]:
    for i in range(first, first + count):
        yield measurement_line(f"/usr/lib/bench/file{i}.so", b"%d" % i) + "\n"


def append_entries(path: Path, first: int, count: int) -> None:
    with path.open("a", encoding="utf-8") as f:
        for start in range(first, first + count, WRITE_CHUNK_ENTRIES):
            f.write("".join(log_lines(start, min(WRITE_CHUNK_ENTRIES, first + count - start))))


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples[WARMUP_RUNS:]) * 1000, 3)


def _check(got: ImaSlice, n: int) -> None:
    if got.start != n or got.text.count("\n") != NEW_ENTRIES:
        raise AssertionError(f"read_from({n}) returned the wrong slice")


async def _timed_request(reader: ImaLogReader, n: int) -> float:
    start = time.perf_counter()
    got = await reader.read_from(n)
    elapsed = time.perf_counter() - start
    _check(got, n)
    return elapsed


def serve(reader: ImaLogReader, n: int, use_trio: bool) -> float:
    """Seconds to serve entries n.. (NEW_ENTRIES of them), through Trio or the core."""
    if use_trio:
        return trio.run(_timed_request, reader, n)
    start = time.perf_counter()
    got = reader.sync.read_from(n)
    elapsed = time.perf_counter() - start
    _check(got, n)
    return elapsed


def bench_big(path: Path, runs: int, use_trio: bool) -> tuple[float, dict[str, Any]]:
    """On the big log at ``path`` (which grows), with a reader of its own."""
    reader = ImaLogReader(path.open("rb"))
    start = time.perf_counter()
    count = reader.sync.read_from(0).count
    cold = time.perf_counter() - start
    samples = []
    for _ in range(WARMUP_RUNS + runs):
        append_entries(path, count, NEW_ENTRIES)
        samples.append(serve(reader, count, use_trio))
        count += NEW_ENTRIES
    info = {
        "cold_full_index_s": round(cold, 3),
        "log_bytes": path.stat().st_size,
        "checkpoints": len(reader.sync.checkpoints),
        "checkpoint_spacing": reader.sync.checkpoints.spacing,
    }
    reader.sync.close()
    return _median_ms(samples), info


def bench_small(workdir: Path, runs: int, use_trio: bool) -> float:
    samples = []
    start = SMALL_LOG_ENTRIES - NEW_ENTRIES
    for run in range(WARMUP_RUNS + runs):
        path = workdir / f"small-{use_trio}-{run}"
        append_entries(path, 0, start)
        path.touch()
        reader = ImaLogReader(path.open("rb"))
        reader.sync.read_from(start)
        append_entries(path, start, NEW_ENTRIES)
        samples.append(serve(reader, start, use_trio))
        reader.sync.close()
    return _median_ms(samples)


def run(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ima-") as tmp:
        workdir = Path(tmp)
        big = workdir / "big"
        append_entries(big, 0, BIG_LOG_ENTRIES - NEW_ENTRIES)
        for name, use_trio in (("core", False), ("trio_request", True)):
            big_ms, info = bench_big(big, runs, use_trio)
            small_ms = bench_small(workdir, runs, use_trio)
            results[name] = {
                f"serve_{NEW_ENTRIES}_new_of_{SMALL_LOG_ENTRIES}_median_ms": small_ms,
                f"serve_{NEW_ENTRIES}_new_of_{BIG_LOG_ENTRIES}_median_ms": big_ms,
                "ratio": round(big_ms / small_ms, 3),
                "big_log": info,
            }
    return {
        "benchmark": "ima",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "runs": runs,
        "warmup": WARMUP_RUNS,
        "new_entries": NEW_ENTRIES,
        "target_ratio": TARGET_RATIO,
        "results": results,
        "meets_target": results["core"]["ratio"] <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ima", description=__doc__)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    args = parser.parse_args()
    report = run(args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
