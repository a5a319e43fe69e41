"""The safe unzip: good archives extract, hostile ones are refused with nothing left behind."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from edge_agent.payload import PayloadArchiveError, extract_payload_zip
from edge_agent.payload.archive import MAX_MEMBER_BYTES, MAX_MEMBERS, MAX_TOTAL_BYTES
from tests.agent_payload.zips import lie_about_size, make_zip, regular, symlink


@pytest.fixture
def secure(tmp_path: Path) -> Path:
    path = tmp_path / "secure"
    path.mkdir(mode=0o700)
    return path


def test_cert_package_shape_extracts(secure: Path) -> None:
    blob = make_zip(
        [
            regular("RevocationNotifier-cert.crt", b"CERT"),
            regular("autorun.sh", b"#!/bin/sh\ntrue\n", 0o755),
            ("plain-dos-entry.txt", b"no unix mode", 0),
            ("conf/", b"", stat.S_IFDIR | 0o755),
            regular("conf/deep/nested/file.txt", b"nested"),
            ("implicit-dir/", b"", 0),
        ]
    )
    unzipped = extract_payload_zip(secure, blob)
    assert unzipped == secure / "unzipped"
    assert (unzipped / "RevocationNotifier-cert.crt").read_bytes() == b"CERT"
    assert (unzipped / "conf/deep/nested/file.txt").read_bytes() == b"nested"
    assert (unzipped / "plain-dos-entry.txt").read_bytes() == b"no unix mode"
    assert (unzipped / "implicit-dir").is_dir()
    assert stat.S_IMODE((unzipped / "autorun.sh").stat().st_mode) == 0o700
    assert stat.S_IMODE((unzipped / "RevocationNotifier-cert.crt").stat().st_mode) == 0o600
    assert sorted(p.name for p in secure.iterdir()) == ["unzipped"]  # no staging left


def test_a_new_archive_replaces_the_old_tree(secure: Path) -> None:
    extract_payload_zip(secure, make_zip([regular("old.txt", b"old")]))
    unzipped = extract_payload_zip(secure, make_zip([regular("new.txt", b"new")]))
    assert sorted(p.name for p in unzipped.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in secure.iterdir()) == ["unzipped"]


def test_an_existing_unzipped_symlink_is_replaced_not_followed(
    secure: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (secure / "unzipped").symlink_to(outside)
    unzipped = extract_payload_zip(secure, make_zip([regular("f.txt", b"x")]))
    assert not unzipped.is_symlink()
    assert (unzipped / "f.txt").read_bytes() == b"x"
    assert list(outside.iterdir()) == []


def _bomb(size: int, name: str = "bomb") -> bytes:
    return make_zip([regular(name, b"\x00" * size)])


HOSTILE = [
    pytest.param(make_zip([regular("../evil", b"x")]), "'..' path", id="dot-dot"),
    pytest.param(make_zip([regular("a/../../evil", b"x")]), "'..' path", id="inner-dot-dot"),
    pytest.param(make_zip([regular("/etc/evil", b"x")]), "absolute path", id="absolute"),
    pytest.param(make_zip([regular("a//b", b"x")]), "empty", id="empty-component"),
    pytest.param(make_zip([regular("a\\..\\evil", b"x")]), "backslash", id="backslash"),
    pytest.param(make_zip([symlink("link", "/etc/passwd")]), "not a regular", id="symlink"),
    pytest.param(
        make_zip([regular("ok.txt", b"x"), symlink("d/link", "../../x")]),
        "not a regular",
        id="symlink-after-good-file",
    ),
    pytest.param(make_zip([("dev", b"", stat.S_IFCHR | 0o600)]), "not a regular", id="device"),
    pytest.param(make_zip([("fifo", b"", stat.S_IFIFO | 0o600)]), "not a regular", id="fifo"),
    pytest.param(
        make_zip([("notdir", b"", stat.S_IFDIR | 0o700)]), "not a regular", id="dir-mode-file"
    ),
    pytest.param(
        make_zip([regular("same", b"1"), regular("same", b"2")]), "duplicate", id="duplicate"
    ),
    pytest.param(_bomb(MAX_MEMBER_BYTES + 1), "declares", id="member-bomb-by-header"),
    pytest.param(
        make_zip([regular(f"part{i}", b"\x00" * (MAX_TOTAL_BYTES // 3 + 1)) for i in range(3)]),
        "in all",
        id="total-bomb-by-header",
    ),
    pytest.param(
        make_zip([regular(f"f{i}", b"") for i in range(MAX_MEMBERS + 1)]),
        "entries exceed",
        id="too-many-files",
    ),
    pytest.param(lie_about_size(_bomb(1024 * 1024), 10), "corrupt entry", id="lying-header"),
    pytest.param(b"PK\x03\x04 not really a zip", "not a readable zip", id="not-a-zip"),
]


@pytest.mark.parametrize(("blob", "reason"), HOSTILE)
def test_hostile_archive_is_refused_and_nothing_is_left(
    secure: Path, tmp_path: Path, blob: bytes, reason: str
) -> None:
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(PayloadArchiveError, match=reason):
        extract_payload_zip(secure, blob)
    assert list(secure.iterdir()) == []
    assert sorted(os.listdir(tmp_path)) == before
    assert not Path("/etc/evil").exists()


def test_refusal_keeps_the_previous_tree(secure: Path) -> None:
    extract_payload_zip(secure, make_zip([regular("old.txt", b"old")]))
    with pytest.raises(PayloadArchiveError):
        extract_payload_zip(secure, make_zip([regular("ok", b"x"), regular("../evil", b"x")]))
    assert sorted(p.name for p in (secure / "unzipped").iterdir()) == ["old.txt"]
    assert sorted(p.name for p in secure.iterdir()) == ["unzipped"]


def test_lying_header_really_lies() -> None:
    # The hostile case above must exercise a header that understates the data.
    info = zipfile.ZipFile(io.BytesIO(lie_about_size(_bomb(1024 * 1024), 10))).infolist()[0]
    assert info.file_size == 10
    assert info.compress_size > 10


def test_failure_midway_removes_partial_files(secure: Path) -> None:
    # The second file's data turns out corrupt only while extracting: the first file, already
    # written, must not survive.
    good = make_zip(
        [regular("first", b"a" * 5000), regular("second", b"b" * 5000)],
        compression=zipfile.ZIP_STORED,
    )
    corrupt = bytearray(good)
    index = corrupt.find(b"second") + len(b"second") + 10  # inside its stored data
    assert corrupt[index] == ord("b")
    corrupt[index] ^= 0xFF
    with pytest.raises(PayloadArchiveError):
        extract_payload_zip(secure, bytes(corrupt))
    assert list(secure.iterdir()) == []
