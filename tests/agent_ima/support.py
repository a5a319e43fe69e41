"""Log files for the reader tests, written with the emulator's line formatting."""

from __future__ import annotations

from pathlib import Path

from tools.ima_emulator import measurement_line


def lines(count: int, first: int = 0, tag: str = "f") -> list[str]:
    """``count`` distinct log lines (with newlines) for files /bin/<tag><number>."""
    return [
        measurement_line(f"/bin/{tag}{i}", b"%d" % i) + "\n" for i in range(first, first + count)
    ]


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write(text)


def rewrite(path: Path, text: str) -> None:
    """Replace the log in place (same inode, as a reboot's new securityfs file would read)."""
    with path.open("r+", encoding="utf-8", newline="") as f:
        f.truncate(0)
        f.write(text)
