"""Without the rust-keylime peer the interop tests skip loudly, and fail under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rust_keylime import support


def test_missing_peer_skips_with_the_path_in_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(support, "RUST_AGENT_DIR", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="NOT tested") as caught:
        support.require_rust_agent()
    assert str(tmp_path / "absent") in str(caught.value)


def test_missing_peer_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "RUST_AGENT_DIR", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"rust-keylime 0\.2\.9 peer not found"):
        support.require_rust_agent()


def test_the_peer_is_found_at_the_documented_place() -> None:
    # ../shared/peers/rust-keylime-0.2.9 relative to the repository root.
    expected = Path(__file__).resolve().parents[2].parent / "shared" / "peers"
    assert support.RUST_AGENT_DIR.parent == expected
