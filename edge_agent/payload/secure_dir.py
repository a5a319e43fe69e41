"""The secure directory ``<keylime_dir>/secure``: a tmpfs when root, else a 0700 directory.

K and the decrypted payload live here, so as root it is a RAM-only tmpfs (never swapped to a
disk that outlives the boot), as rust-keylime mounts it (keylime/src/secure_mount.rs).

Whether it is mounted is read from ``/proc/self/mountinfo``, never from ``mount``'s output:
CVE-2022-23948 let a local user fake a mount line there.  proc(5) gives each mountinfo line
as ``id parent major:minor root mount-point options [optional...] - fstype source super``
with space, tab, newline and backslash in paths written as octal escapes (``\\040`` ...).
When a path is mounted over several times the last line is the one on top, so it wins.

``is_tmpfs_mounted``/``mount_fs_type`` are pure; ``prepare_secure_dir`` blocks (it may run
``mount``): from async code call it in ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge_agent.payload.errors import SecureDirError

__all__ = [
    "MOUNTINFO_PATH",
    "SECURE_DIR_MODE",
    "SecureDir",
    "is_tmpfs_mounted",
    "mount_fs_type",
    "prepare_secure_dir",
    "unescape_mountinfo",
]

log = logging.getLogger(__name__)

MOUNTINFO_PATH = Path("/proc/self/mountinfo")
# mount(8) from util-linux, by absolute path so PATH cannot substitute another program.
MOUNT_COMMAND = "/usr/bin/mount" if Path("/usr/bin/mount").exists() else "/bin/mount"
SECURE_DIR_MODE = 0o700
# tmpfs size= accepts a number with an optional k/m/g (or %) suffix.  Anything else is refused
# before it reaches mount -o, where a comma would smuggle in more options.
_SECURE_SIZE_RE = re.compile(r"[0-9]{1,12}[kKmMgG%]?")
# Mounting a tmpfs is instant; a mount that hangs this long is broken.
MOUNT_TIMEOUT_SECONDS = 10.0
# The mount point is field 5 of a mountinfo line (proc(5)).
_MOUNT_POINT_FIELD = 4
_OCTAL_ESCAPE_RE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class SecureDir:
    """The prepared directory and whether it is a verified tmpfs."""

    path: Path
    is_tmpfs: bool


def unescape_mountinfo(field: str) -> str:
    """A mountinfo path field with its ``\\ooo`` octal escapes decoded."""
    return _OCTAL_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_fs_type(path: Path, mountinfo_text: str) -> Optional[str]:
    """The file-system type mounted on exactly ``path`` (the topmost mount), or None."""
    wanted = os.path.normpath(str(path))
    found: Optional[str] = None
    for line in mountinfo_text.splitlines():
        fields = line.split(" ")
        if len(fields) <= _MOUNT_POINT_FIELD:
            continue
        if unescape_mountinfo(fields[_MOUNT_POINT_FIELD]) != wanted:
            continue
        try:
            separator = fields.index("-", _MOUNT_POINT_FIELD + 2)
            found = fields[separator + 1]
        except (ValueError, IndexError):
            raise SecureDirError(path, "unparsable mountinfo line for this path") from None
    return found


def is_tmpfs_mounted(path: Path, mountinfo_text: str) -> bool:
    """True when the topmost mount on exactly ``path`` is a tmpfs."""
    return mount_fs_type(path, mountinfo_text) == "tmpfs"


def prepare_secure_dir(
    path: Path,
    size: str,
    *,
    is_root: bool,
    mountinfo_path: Path = MOUNTINFO_PATH,
) -> SecureDir:
    """Create ``path`` (0700) and, when root, make sure a tmpfs of ``size`` is mounted there.

    A path already mounted as tmpfs is reused (also when not root, e.g. after run_as); one
    mounted with another file system is an error (rust-keylime refuses it too).  Not root
    and not mounted: a plain 0700 directory and a warning.
    """
    if not _SECURE_SIZE_RE.fullmatch(size):
        raise SecureDirError(path, f"secure_size {size!r} is not a tmpfs size like '1m'")
    path = Path(os.path.realpath(path))
    _make_private_dir(path)
    fs_type = mount_fs_type(path, _read_mountinfo(path, mountinfo_path))
    if fs_type == "tmpfs":
        # Also after run_as dropped root: the tmpfs mounted at start-up is still there.
        log.debug("secure directory %s is already a tmpfs", path)
        return SecureDir(path, is_tmpfs=True)
    if fs_type is not None:
        raise SecureDirError(path, f"already mounted with {fs_type}, not tmpfs; unmount it")
    if not is_root:
        log.warning("not running as root: %s is a plain directory, not a tmpfs", path)
        return SecureDir(path, is_tmpfs=False)
    _mount_tmpfs(path, size)
    if not is_tmpfs_mounted(path, _read_mountinfo(path, mountinfo_path)):
        raise SecureDirError(path, "mount reported success but mountinfo shows no tmpfs")
    log.info("mounted a %s tmpfs on %s", size, path)
    return SecureDir(path, is_tmpfs=True)


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=SECURE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, SECURE_DIR_MODE)
    except OSError as exc:
        raise SecureDirError(path, f"cannot create it: {exc.strerror}") from exc


def _read_mountinfo(path: Path, mountinfo_path: Path) -> str:
    try:
        return mountinfo_path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise SecureDirError(path, f"cannot read {mountinfo_path}: {exc.strerror}") from exc


def _mount_tmpfs(path: Path, size: str) -> None:
    argv = [MOUNT_COMMAND, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)]
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed argv; size validated above
            argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SecureDirError(path, f"cannot run mount: {exc}") from exc
    if proc.returncode != 0:
        raise SecureDirError(path, f"mount exited {proc.returncode}: {proc.stderr.strip()[:200]}")
