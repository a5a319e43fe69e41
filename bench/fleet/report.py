"""The markdown table of bench/results/verifier_fleet.md, rebuilt from every recorded run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_HEAD = (
    "| label | verifier | agents | interval s | att/s | CPU ms/att | cores | interval p50/p95 s "
    "| p95/configured | KiB/agent | enrolled in s | admin single p50/p99 ms | bulk p50/p99 ms "
    "| admin failed | silent agents | load avg |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _row(run: dict[str, Any]) -> str:
    admin = run["admin"]
    single, bulk = admin["single"], admin["bulk"]
    enrolled = run["enrol_seconds"]
    if enrolled is None:
        enrolled = f"{run['enrolled']}/{run['agents']} only"
    verifier = run["verifier"]
    if run.get("options"):
        verifier += f" ({'; '.join(run['options'])})"
    cells = [
        run["label"], verifier, run["agents"], run["interval_s"], run["att_per_s"],
        run["cpu_ms_per_att"], run["cpu_cores_used"],
        f"{_cell(run['interval_p50_s'])} / {_cell(run['interval_p95_s'])}",
        run["p95_over_configured"], run["rss_kib_per_agent"], enrolled,
        f"{_cell(single['p50_ms'])} / {_cell(single['p99_ms'])}",
        f"{_cell(bulk['p50_ms'])} / {_cell(bulk['p99_ms'])}",
        single["failed"] + bulk["failed"], run["silent_agents"],
        " ".join(str(x) for x in run["loadavg_start"][:1] + run["loadavg_end"][:1]),
    ]  # fmt: skip
    return "| " + " | ".join(_cell(c) for c in cells) + " |\n"


def write_markdown(recorded: dict[str, Any], path: Path) -> None:
    body = "".join(_row(run) for run in recorded["runs"])
    notes = recorded.get("notes", "")
    path.write_text(
        "# Verifier fleet benchmark (bench/verifier_fleet.py)\n\n"
        "Generated from verifier_fleet.json; load avg is the 1-minute figure at the start and "
        "end of the window.\n\n" + _HEAD + body + ("\n" + notes + "\n" if notes else "")
    )
