"""tools.procfs: the peak RSS read from /proc for the demo and the benchmark."""

from __future__ import annotations

import os

import pytest

from tools.procfs import peak_rss_mb


def test_peak_rss_grows_with_what_the_process_touches() -> None:
    before = peak_rss_mb(os.getpid())
    block = bytearray(32 * 1024 * 1024)  # zero pages are only resident once written
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    after = peak_rss_mb(os.getpid())
    del block
    assert before > 1.0
    assert after >= before + 30.0


def test_a_process_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        peak_rss_mb(2**22 + 1)  # above the kernel's pid_max limit
