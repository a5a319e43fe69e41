"""One AK for both agents: the real rust-keylime 0.2.9 and limelet load each other's file.

rust-keylime writes ``agent_data.json`` before it contacts a registrar (keylime-agent/src/
main.rs), so these tests need only swtpm; the registrar-level swap is in test_swap.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from attest_protocol.quote import verify_quote
from attest_protocol.tpm2.public import parse_tpm2b_public
from tests.rust_keylime.support import require_rust_agent, running_rust_agent, rust_conf
from tests.swtpm.support import MASK, NONCE, config, opened
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

RUST_LOADED = "Loaded old AK key from"
RUST_NOT_FOUND = "Agent Data not found in"


def _write_conf(tmp_path: Path, keylime_dir: Path) -> Path:
    conf = tmp_path / "agent.conf"
    text = rust_conf(
        keylime_dir, uuid=str(uuid.uuid4()), port=free_port(), registrar_port=free_port()
    )
    conf.write_text(text)
    return conf


def _tpm2b(array: list[int]) -> bytes:
    return len(array).to_bytes(2, "big") + bytes(array)


async def test_limelet_reuses_the_ak_rust_keylime_made(swtpm: Swtpm, tmp_path: Path) -> None:
    require_rust_agent()
    keylime_dir = tmp_path / "keylime"
    keylime_dir.mkdir()
    data_file = keylime_dir / "agent_data.json"
    with running_rust_agent(_write_conf(tmp_path, keylime_dir), swtpm.tcti, tmp_path) as rust:
        rust.wait_for_log("Agent UUID:")  # logged once agent_data.json is stored
        assert RUST_NOT_FOUND in rust.log()
    written = json.loads(data_file.read_text())
    async with opened(config(swtpm.tcti, keylime_dir)) as tpm:
        ak = await tpm.ak()
        quote = await tpm.quote(NONCE, MASK)
    assert not ak.created
    assert ak.public == _tpm2b(written["ak_public"])
    verify_quote(quote, parse_tpm2b_public(ak.public), NONCE)
    # limelet leaves the file as rust-keylime will read it again.
    assert json.loads(data_file.read_text()) == written


async def test_rust_keylime_reuses_the_ak_limelet_made(swtpm: Swtpm, tmp_path: Path) -> None:
    require_rust_agent()
    keylime_dir = tmp_path / "keylime"
    keylime_dir.mkdir()
    data_file = keylime_dir / "agent_data.json"
    async with opened(config(swtpm.tcti, keylime_dir)) as tpm:
        ak = await tpm.ak()
    assert ak.created
    written = json.loads(data_file.read_text())
    with running_rust_agent(_write_conf(tmp_path, keylime_dir), swtpm.tcti, tmp_path) as rust:
        rust.wait_for_log("Agent UUID:")
        assert RUST_LOADED in rust.log()
    # rust-keylime stores the AK it uses: the same key, so the registrar sees no new AK.
    assert json.loads(data_file.read_text())["ak_public"] == written["ak_public"]
    assert _tpm2b(written["ak_public"]) == ak.public
