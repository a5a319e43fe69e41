"""Zip archives for the tests, good and hostile, built in memory."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterable

Entry = tuple[str, bytes, int]  # name, data, Unix mode (0: none recorded)


def make_zip(entries: Iterable[Entry], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", compression=compression) as archive:
        # A duplicate name is one of the hostile cases; zipfile warns about writing it.
        warnings.simplefilter("ignore", UserWarning)
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            info.create_system = 3 if mode else 0
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return out.getvalue()


def regular(name: str, data: bytes, perms: int = 0o644) -> Entry:
    return (name, data, stat.S_IFREG | perms)


def symlink(name: str, target: str) -> Entry:
    return (name, target.encode(), stat.S_IFLNK | 0o777)


def lie_about_size(blob: bytes, declared: int) -> bytes:
    """Rewrite every local and central header to declare ``declared`` uncompressed bytes."""
    data = bytearray(blob)
    # APPNOTE 4.3.7: local header, uncompressed size at offset 22; 4.3.12: central at 24.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            struct.pack_into("<I", data, start + offset, declared)
            start += 4
    return bytes(data)
