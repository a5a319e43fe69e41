"""A second verifier on the same SQLite file refuses to start; PostgreSQL takes no lock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.support import API, RunningVerifier, verifier_config
from verifier_lite.errors import ConfigError
from verifier_lite.server import serve_verifier
from verifier_lite.store_lock import lock_database


async def test_second_verifier_on_one_sqlite_file_refuses_to_start(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> None:
    config = verifier_config(tmp_path / "verifier", tls_files)
    bound = await nursery.start(serve_verifier, config)
    with pytest.raises(ConfigError) as refused:
        await serve_verifier(config)
    assert refused.value.key == "database_url"
    assert "in use by another verifier" in str(refused.value)
    assert str(config.sqlite_path()) in str(refused.value)
    first = RunningVerifier(config, bound, tls_files)
    async with first.client() as client:  # the first one is untouched
        assert (await client.get(f"/{API}/agents/")).status_code == 200


async def test_lock_is_released_when_the_verifier_stops(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    config = verifier_config(tmp_path / "verifier", tls_files)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_verifier, config)
        nursery.cancel_scope.cancel()
    lock_database(config.sqlite_path()).release()  # free again: taken without error


def test_lock_release_is_idempotent(tmp_path: Path) -> None:
    lock = lock_database(tmp_path / "cv.sqlite")
    with pytest.raises(ConfigError):
        lock_database(tmp_path / "cv.sqlite")
    lock.release()
    lock.release()
    lock_database(tmp_path / "cv.sqlite").release()
