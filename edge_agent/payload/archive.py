"""Unzip a decrypted payload into ``<secure>/unzipped`` without trusting the archive.

The payload comes from the tenant, but a zip is a rich format and the agent runs as root when
it unpacks it, so every entry is checked before a byte is written (CWE-22 "zip slip", zip
bombs, symlink tricks), and the bytes are counted while writing, because headers can lie:

* names: relative, ``/``-separated, no ``..``, ``.`` or empty component, no backslash or NUL,
  no duplicates;
* kinds: regular files and directories only.  The Unix mode in the high 16 bits of the
  external attributes (APPNOTE 4.4.15, written by Info-ZIP and Python's zipfile) must not
  say symlink, device, FIFO or socket; encrypted entries are refused;
* sizes: MAX_MEMBERS entries, MAX_MEMBER_BYTES each and MAX_TOTAL_BYTES in all, by header
  first and then by the bytes actually produced.

Extraction goes to a fresh temp directory inside the secure directory, files opened with
O_EXCL|O_NOFOLLOW, and is renamed to ``unzipped`` only when every entry succeeded; a refused
archive leaves nothing behind.  Files are 0600 (0700 when the archive marks them
executable), directories 0700.  Blocking: call from a worker thread.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from edge_agent.payload.errors import PayloadArchiveError

__all__ = [
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_TOTAL_BYTES",
    "UNZIPPED_DIR_NAME",
    "extract_payload_zip",
]

# rust-keylime extracts to <secure>/unzipped (keylime-agent/src/payloads.rs setup_unzipped).
UNZIPPED_DIR_NAME = "unzipped"
# A Keylime cert package has 7 files plus the tenant's --include files; a thousand entries is
# far beyond any payload and bounds the inode and metadata work.
MAX_MEMBERS = 1000
# The default secure tmpfs is 1 MiB; these bounds matter when the directory is not a tmpfs
# (agent not root) or secure_size is large.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 32 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_FILE_MODE = 0o600
_EXEC_FILE_MODE = 0o700
_DIR_MODE = 0o700
# APPNOTE 4.4.2: "version made by" host 3 is Unix, the only one whose attributes carry a mode.
_ZIP_HOST_UNIX = 3
_FLAG_ENCRYPTED = 0x1


def extract_payload_zip(secure_dir: Path, payload: bytes) -> Path:
    """Extract ``payload`` (a zip) to ``secure_dir/unzipped``, replacing any old one."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise PayloadArchiveError(f"not a readable zip archive: {exc}") from exc
    with archive:
        members = _checked_members(archive)
        try:
            staging = Path(tempfile.mkdtemp(prefix=".unzipping-", dir=secure_dir))
        except OSError as exc:
            raise PayloadArchiveError(f"cannot create a staging directory: {exc}") from exc
        try:
            _extract_all(archive, members, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return _swap_in(secure_dir, staging)


def _checked_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise PayloadArchiveError(f"{len(members)} entries exceed {MAX_MEMBERS}")
    seen: set[str] = set()
    total = 0
    for info in members:
        _check_name(info.filename)
        _check_kind(info)
        key = info.filename.rstrip("/")
        if key in seen:
            raise PayloadArchiveError("duplicate entry", info.filename)
        seen.add(key)
        if info.file_size > MAX_MEMBER_BYTES:
            raise PayloadArchiveError(
                f"declares {info.file_size} bytes, over {MAX_MEMBER_BYTES}", info.filename
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise PayloadArchiveError(f"declares {total} bytes in all, over {MAX_TOTAL_BYTES}")
    return members


def _check_name(name: str) -> None:
    if "\\" in name or "\x00" in name:
        raise PayloadArchiveError("backslash or NUL in name", name)
    if name.startswith("/"):
        raise PayloadArchiveError("absolute path", name)
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PayloadArchiveError("empty, '.' or '..' path component", name)


def _check_kind(info: zipfile.ZipInfo) -> None:
    if info.flag_bits & _FLAG_ENCRYPTED:
        raise PayloadArchiveError("encrypted entry", info.filename)
    mode = info.external_attr >> 16
    if info.create_system != _ZIP_HOST_UNIX or stat.S_IFMT(mode) == 0:
        return  # no Unix file type recorded: the trailing '/' alone says file or directory
    if stat.S_ISDIR(mode) and info.is_dir():
        return
    if stat.S_ISREG(mode) and not info.is_dir():
        return
    raise PayloadArchiveError(f"not a regular file or directory (mode {mode:o})", info.filename)


def _extract_all(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: Path) -> None:
    budget = [MAX_TOTAL_BYTES]
    for info in members:
        target = root.joinpath(*info.filename.rstrip("/").split("/"))
        try:
            if info.is_dir():
                target.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            else:
                target.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
                _extract_file(archive, info, target, budget)
        except OSError as exc:
            raise PayloadArchiveError(f"cannot write it: {exc.strerror}", info.filename) from exc


def _extract_file(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int]
) -> None:
    executable = bool((info.external_attr >> 16) & 0o111)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, _EXEC_FILE_MODE if executable else _FILE_MODE)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as source:
            while chunk := source.read(_CHUNK_BYTES):
                written += len(chunk)
                budget[0] -= len(chunk)
                if written > info.file_size or written > MAX_MEMBER_BYTES:
                    raise PayloadArchiveError("inflates past its declared size", info.filename)
                if budget[0] < 0:
                    raise PayloadArchiveError(f"archive inflates past {MAX_TOTAL_BYTES} bytes")
                out.write(chunk)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        # CRC mismatch, truncated data, unsupported compression
        raise PayloadArchiveError(f"corrupt entry: {exc}", info.filename) from exc


def _swap_in(secure_dir: Path, staging: Path) -> Path:
    """Rename the staging tree to ``unzipped``; an old tree is moved aside, then removed."""
    final = secure_dir / UNZIPPED_DIR_NAME
    old = None
    try:
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=".old-unzipped-", dir=secure_dir))
            os.replace(final, old / UNZIPPED_DIR_NAME)
        os.replace(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PayloadArchiveError(f"cannot move the extracted tree into place: {exc}") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final
