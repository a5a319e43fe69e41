"""Fixtures for the rust-keylime tests: tests/verifier's verifier, and a private Keylime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.verifier.conftest import tls_files, verifier
from tools.keylime_services import KeylimeServices, start_keylime

__all__ = ["keylime", "tls_files", "verifier"]

QUOTE_INTERVAL_SECONDS = 1


@pytest.fixture
def keylime(tmp_path: Path) -> Iterator[KeylimeServices]:
    """Keylime 7.14.3's registrar and verifier for one test, quoting once a second."""
    with start_keylime(tmp_path / "keylime", quote_interval_seconds=QUOTE_INTERVAL_SECONDS) as svc:
        yield svc
