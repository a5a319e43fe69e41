"""What /proc says about a process, for the demo and the benchmarks (Linux only)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["peak_rss_mb"]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM in /proc/PID/status, proc(5)), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 2)
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
