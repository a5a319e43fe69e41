"""Private files in the agent's data dir: read with a size bound, written atomically 0600.

A key file is written to a temp file in the same directory (created 0600 by mkstemp, so the
key is never readable by others, even for a moment), fsynced, renamed over the old one, and
the rename made durable by fsyncing the directory.  A crash leaves the old file or the new
one, never half of one.  Blocking: call from a worker thread.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from edge_agent.keys.errors import KeyFileError

__all__ = ["DATA_DIR_MODE", "PRIVATE_FILE_MODE", "read_private_file", "write_private_file"]

PRIVATE_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700
# A PEM key or certificate of the kinds used here is a few KiB; refuse anything absurd.
MAX_KEY_FILE_BYTES = 64 * 1024


def read_private_file(path: Path) -> Optional[bytes]:
    """The file's bytes, or None when it does not exist."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(path, f"cannot read it: {exc.strerror}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(path, f"larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600, creating the directory (0700)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise KeyFileError(path, f"cannot create it: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, PRIVATE_FILE_MODE)
        os.replace(tmp_name, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise KeyFileError(path, f"cannot write it: {exc.strerror}") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
