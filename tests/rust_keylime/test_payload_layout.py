"""Payloads land where rust-keylime 0.2.9 puts them, so its payload scripts run unchanged.

rust-keylime (keylime-agent/src/payloads.rs) writes ``dec_payload_file`` and ``enc_keyname``
inside ``<secure>/unzipped/``, unzips there and runs the payload script with ``unzipped/`` as
its working directory.  The script below is written for that layout: it reads
``./decrypted_payload`` and ``./derived_tci_key`` by relative path.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from edge_agent.payload import deploy_payload, run_payload_script
from edge_agent.payload.errors import PayloadArchiveError, PayloadFileError
from tests.agent_payload.zips import make_zip, regular, symlink

K = bytes(range(32))
RUST_STYLE_SCRIPT = b"""#!/bin/sh
# A rust-keylime payload script: everything it needs is in its working directory.
set -e
sha256sum ./decrypted_payload | cut -d' ' -f1 > payload.sha256
od -An -tx1 ./derived_tci_key | tr -d ' \\n' > key.hex
cat ./config.txt > seen-config
"""
OPTIONS = {"dec_payload_file": "decrypted_payload", "enc_keyname": "derived_tci_key"}


def _payload() -> bytes:
    return make_zip(
        [regular("autorun.sh", RUST_STYLE_SCRIPT, 0o755), regular("config.txt", b"site=7\n")]
    )


async def test_rust_keylime_payload_script_runs_unchanged(tmp_path: Path) -> None:
    payload = _payload()
    deployed = await deploy_payload(tmp_path, payload, K, extract_zip=True, **OPTIONS)
    unzipped = tmp_path / "unzipped"
    assert deployed.unzipped == unzipped
    assert deployed.payload_path == unzipped / "decrypted_payload"
    assert deployed.key_path == unzipped / "derived_tci_key"
    assert not (tmp_path / "decrypted_payload").exists()  # not one level up any more
    for path in (deployed.payload_path, deployed.key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status = await run_payload_script(unzipped, "autorun.sh", allowed=True)
    assert status == 0
    assert (unzipped / "payload.sha256").read_text().strip() == hashlib.sha256(payload).hexdigest()
    assert (unzipped / "key.hex").read_text() == K.hex()
    assert (unzipped / "seen-config").read_text() == "site=7\n"


async def test_without_extraction_the_files_are_still_in_unzipped(tmp_path: Path) -> None:
    deployed = await deploy_payload(tmp_path, b"plain text", K, extract_zip=False, **OPTIONS)
    assert deployed.unzipped is None
    assert (tmp_path / "unzipped" / "decrypted_payload").read_bytes() == b"plain text"
    assert (tmp_path / "unzipped" / "derived_tci_key").read_bytes() == K


async def test_an_archive_entry_cannot_replace_the_key_or_payload(tmp_path: Path) -> None:
    payload = make_zip([regular("derived_tci_key", b"forged"), regular("decrypted_payload", b"x")])
    await deploy_payload(tmp_path, payload, K, extract_zip=True, **OPTIONS)
    assert (tmp_path / "unzipped" / "derived_tci_key").read_bytes() == K
    assert (tmp_path / "unzipped" / "decrypted_payload").read_bytes() == payload


async def test_refused_archive_leaves_only_key_and_payload(tmp_path: Path) -> None:
    old = await deploy_payload(tmp_path, _payload(), K, extract_zip=True, **OPTIONS)
    assert old.unzipped is not None
    hostile = make_zip([symlink("evil", "/etc/passwd")])
    with pytest.raises(PayloadArchiveError):
        await deploy_payload(tmp_path, hostile, K, extract_zip=True, **OPTIONS)
    unzipped = tmp_path / "unzipped"
    assert sorted(p.name for p in unzipped.iterdir()) == ["decrypted_payload", "derived_tci_key"]
    assert (unzipped / "decrypted_payload").read_bytes() == hostile


async def test_bad_names_are_refused_before_anything_is_touched(tmp_path: Path) -> None:
    await deploy_payload(tmp_path, _payload(), K, extract_zip=True, **OPTIONS)
    before = sorted(p.name for p in (tmp_path / "unzipped").iterdir())
    with pytest.raises(PayloadFileError, match="enc_keyname"):
        await deploy_payload(
            tmp_path, b"x", K, extract_zip=False, dec_payload_file="p", enc_keyname="../k"
        )
    assert sorted(p.name for p in (tmp_path / "unzipped").iterdir()) == before
