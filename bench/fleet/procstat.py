"""CPU and memory of a process and all its descendants, from /proc (proc(5), Linux only).

Keylime's verifier forks worker processes, so a figure for "the verifier" is the sum over
the tree below the process that was started.  CPU is utime+stime of every live process plus
cutime+cstime (children already reaped); memory is the proportional set size (Pss from
smaps_rollup), so pages a forked worker shares with its parent are not counted twice.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; fields after its closing ")" are fixed.
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(roots: list[int]) -> float:
    total = 0
    for root in roots:
        for pid in process_tree(root):
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            # utime, stime, cutime, cstime are fields 14-17 of stat; [0] here is field 3.
            total += sum(int(f) for f in fields[11:15])
    return total / CLOCK_TICKS


def pss_bytes(roots: list[int]) -> int:
    total = 0
    for root in roots:
        for pid in process_tree(root):
            try:
                lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total
