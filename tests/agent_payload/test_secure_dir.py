"""The secure directory: mountinfo parsing (pure, table-driven) and a real tmpfs mount."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.payload import SecureDirError, is_tmpfs_mounted, mount_fs_type, prepare_secure_dir
from edge_agent.payload.secure_dir import MOUNTINFO_PATH, unescape_mountinfo

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
35 22 0:30 / /var/lib/keylime/secure rw,relatime shared:15 - tmpfs tmpfs rw,size=1024k,mode=700
37 22 0:32 / /srv/with\\040space rw - tmpfs tmpfs rw
38 22 0:33 / /srv/other rw,relatime - ext4 /dev/sdb1 rw
41 22 0:35 / /mnt/many rw shared:3 master:1 propagate_from:2 - tmpfs none rw
42 22 0:36 / /mnt/over rw - tmpfs none rw
43 42 0:37 / /mnt/over rw - ext4 /dev/sdc1 rw
44 22 0:38 / /mnt/under rw - ext4 /dev/sdd1 rw
45 44 0:39 / /mnt/under rw - tmpfs none rw
46 22 0:40 / /mnt/back\\134slash rw - tmpfs none rw
"""

CASES = [
    ("/var/lib/keylime/secure", "tmpfs"),
    ("/var/lib/keylime/secure/", "tmpfs"),
    ("/var/lib/keylime", None),  # a prefix of a mount point is not mounted
    ("/var/lib/keylime/sec", None),  # a string prefix of a mount point
    ("/var/lib/keylime/secure/sub", None),  # inside a tmpfs, but not itself a mount point
    ("/var/lib/keylime/secure2", None),
    ("/srv/with space", "tmpfs"),  # \040 in mountinfo
    ("/srv/with\\040space", None),  # the escaped spelling is not the path
    ("/srv/with", None),
    ("/srv/other", "ext4"),
    ("/mnt/many", "tmpfs"),  # several optional fields before the separator
    ("/mnt/over", "ext4"),  # the last mount on a path is the visible one
    ("/mnt/under", "tmpfs"),
    ("/mnt/back\\slash", "tmpfs"),
    ("/", "ext4"),
]


@pytest.mark.parametrize(("path", "fs_type"), CASES)
def test_mount_fs_type(path: str, fs_type: str | None) -> None:
    assert mount_fs_type(Path(path), MOUNTINFO) == fs_type
    assert is_tmpfs_mounted(Path(path), MOUNTINFO) is (fs_type == "tmpfs")


@pytest.mark.parametrize(
    ("field", "path"),
    [("/a\\040b", "/a b"), ("/a\\011b", "/a\tb"), ("/a\\012b", "/a\nb"), ("/a\\134b", "/a\\b")],
)
def test_unescape(field: str, path: str) -> None:
    assert unescape_mountinfo(field) == path


def test_unparsable_line_for_the_path_is_an_error() -> None:
    with pytest.raises(SecureDirError, match="unparsable"):
        mount_fs_type(Path("/x"), "50 22 0:1 / /x rw tmpfs none rw\n")


def test_short_lines_elsewhere_are_skipped() -> None:
    assert mount_fs_type(Path("/x"), "junk\n\n50 22 0:1 / /x rw - tmpfs none rw\n") == "tmpfs"


@pytest.mark.parametrize("size", ["", "1m,exec", "1 m", "-1", "1t", "m"])
def test_bad_secure_size_is_refused(tmp_path: Path, size: str) -> None:
    with pytest.raises(SecureDirError, match="secure_size"):
        prepare_secure_dir(tmp_path / "secure", size, is_root=False)


def test_not_root_makes_a_private_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_agent.payload.secure_dir"):
        secure = prepare_secure_dir(tmp_path / "keylime" / "secure", "1m", is_root=False)
    assert secure.is_tmpfs is False
    assert stat.S_IMODE(secure.path.stat().st_mode) == 0o700
    assert "not a tmpfs" in caplog.text


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A secure dir path (with a space, to exercise \\040), unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "keylime dir" / "secure"
    yield path
    for _ in range(3):  # a test may stack two mounts; a stuck umount must not loop forever
        if mount_fs_type(path, MOUNTINFO_PATH.read_text()) is None:
            break
        _umount(path)


def _prepare_or_skip(path: Path) -> None:
    try:
        prepare_secure_dir(path, "1m", is_root=True)
    except SecureDirError as exc:
        if "permission denied" in exc.reason.lower() or "only root" in exc.reason.lower():
            pytest.skip(f"this machine does not permit mounting a tmpfs: {exc.reason}")
        raise


def test_root_mounts_a_real_tmpfs_and_verifies_it(mount_point: Path) -> None:
    _prepare_or_skip(mount_point)
    text = MOUNTINFO_PATH.read_text()
    assert is_tmpfs_mounted(mount_point, text)
    line = next(ln for ln in text.splitlines() if "keylime\\040dir/secure" in ln)
    assert "size=1024k" in line and "mode=700" in line
    # Already mounted: reused, not mounted twice; also when asked without root (after run_as).
    again = prepare_secure_dir(mount_point, "1m", is_root=True)
    assert again.is_tmpfs
    assert prepare_secure_dir(mount_point, "1m", is_root=False).is_tmpfs
    lines = [ln for ln in MOUNTINFO_PATH.read_text().splitlines() if "keylime\\040dir" in ln]
    assert len(lines) == 1


def test_root_refuses_a_path_mounted_with_another_fs(mount_point: Path, tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    mount_point.mkdir(parents=True)
    proc = subprocess.run(
        ["mount", "--bind", str(source), str(mount_point)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"bind mount not permitted here: {proc.stderr!r}")
    fs_type = mount_fs_type(mount_point, MOUNTINFO_PATH.read_text())
    assert fs_type not in (None, "tmpfs")
    with pytest.raises(SecureDirError, match=f"already mounted with {fs_type}"):
        prepare_secure_dir(mount_point, "1m", is_root=True)


def test_a_fake_mountinfo_that_never_shows_the_mount_is_an_error(
    mount_point: Path, tmp_path: Path
) -> None:
    # mount succeeds, but the mountinfo we are pointed at never lists it: refused, because
    # success is judged by mountinfo alone (CVE-2022-23948).
    fake = tmp_path / "mountinfo"
    fake.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    with pytest.raises(SecureDirError, match="mountinfo shows no tmpfs"):
        prepare_secure_dir(mount_point, "1m", is_root=True, mountinfo_path=fake)
