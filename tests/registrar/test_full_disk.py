"""A full disk under the registrar: registrations get 503 with a message, reads keep working,
nothing stored is lost and the process lives on.  A real fault: the database is on a tmpfs
of a few hundred KiB, filled by a file beside it (needs root for the mount)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from registrar_lite.server import serve_registrar
from tests.cv_ca import TlsFiles
from tests.registrar.support import API, RunningRegistrar, SoftwareIdentity, registrar_config

TMPFS_SIZE = "512k"
FILL_CHUNK = 16 * 1024
MAX_ATTEMPTS = 200  # registrations tried on the full disk before one must be refused


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {result.stderr.decode(errors='replace')}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no room left."""
    with path.open("wb") as f:
        while True:
            try:
                f.write(bytes(FILL_CHUNK))
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    # Single bytes too: the last chunk may have left less than a chunk free.
    with path.open("ab", buffering=0) as f:
        while True:
            try:
                f.write(b"\0")
            except OSError:
                return


async def test_full_disk_is_503_and_reads_survive(
    nursery: trio.Nursery, tls_files: TlsFiles, small_disk: Path, identity: SoftwareIdentity
) -> None:
    config = registrar_config(small_disk / "registrar", tls_files)
    registrar = RunningRegistrar(config, await nursery.start(serve_registrar, config), tls_files)
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        assert (await agent.post(f"/{API}/agents/kept", json=identity.body())).is_success
        tag = registrar.auth_tag("kept")
        assert (await agent.put(f"/{API}/agents/kept", json={"auth_tag": tag})).is_success
        before = registrar.stored("kept")

        await trio.to_thread.run_sync(fill, small_disk / "filler")
        accepted: list[str] = []
        refused = None
        for n in range(MAX_ATTEMPTS):
            response = await agent.post(f"/{API}/agents/new{n}", json=identity.body())
            assert response.status_code in (200, 503), response.text
            if response.status_code == 503:
                refused = response
                break
            accepted.append(f"new{n}")
        assert refused is not None, "the full disk never refused a registration"
        assert refused.json()["code"] == 503
        assert "cannot be written" in refused.json()["status"]

        assert (await agent.get("/version")).status_code == 200
        shown = await admin.get(f"/{API}/agents/kept")
        assert shown.status_code == 200, shown.text
        listed = await admin.get(f"/{API}/agents/")
        assert listed.status_code == 200

        (small_disk / "filler").unlink()
        again = await agent.post(f"/{API}/agents/after", json=identity.body())
        assert again.status_code == 200, again.text
        assert registrar.stored("kept") == before
        for agent_id in accepted:  # every registration that was answered 200 is there
            assert registrar.stored(agent_id) is not None
