"""tools.procfs: the peak RSS read from /proc for the demo and the benchmark."""

from __future__ import annotations

import os

import pytest

from tools.procfs import peak_rss_mb


def _resident_mb_now() -> float:
    """VmRSS of this process: the peak can sit above it, so growth is measured from here."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line in /proc/self/status")


def test_peak_rss_grows_with_what_the_process_touches() -> None:
    before = peak_rss_mb(os.getpid())
    resident = _resident_mb_now()
    block = bytearray(32 * 1024 * 1024)  # zero pages are only resident once written
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    after = peak_rss_mb(os.getpid())
    del block
    assert before > 1.0
    # 32 MiB written is 32 MiB resident on top of what was resident, whatever the old peak.
    assert after >= resident + 30.0


def test_a_process_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        peak_rss_mb(2**22 + 1)  # above the kernel's pid_max limit
