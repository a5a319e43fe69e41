"""Revocation actions: lookup, calling convention, failures, and the composed handler."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.revocation import (
    NoRevocationCertError,
    RevocationMessage,
    RevocationOptions,
    RevocationSignatureError,
    configured_actions,
    handle_notification,
    parse_action_list,
    run_actions,
    verify_notification,
)
from tests.agent_payload.keys import make_cert, notification, resign

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CERT = make_cert(KEY)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- actions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", []),
        ("a", ["a"]),
        ("a, b,c", ["a", "b", "c"]),
        ("[a, 'b c', \"d\"]", ["a", "b c", "d"]),
        ("a\nb\n\nc\n", ["a", "b", "c"]),
        ("[]", []),
    ],
)
def test_parse_action_list(text: str, names: list[str]) -> None:
    assert parse_action_list(text) == names


def _action(directory: Path, name: str, body: str, mode: int = 0o700) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    path.chmod(mode)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(actions_dir, secure_dir, unzipped) and an output dir the actions write to."""
    actions_dir = tmp_path / "actions"
    secure = tmp_path / "secure"
    unzipped = secure / "unzipped"
    unzipped.mkdir(parents=True)
    actions_dir.mkdir()
    (tmp_path / "out").mkdir()
    return actions_dir, secure, unzipped


def _message() -> RevocationMessage:
    body, _ = notification(KEY, agent_id="agent-42")
    return verify_notification(body, CERT)


RECORD = '#!/bin/sh\ncp "$1" "{out}/{name}.json"\necho "ran {name} in $(pwd)"\n'


async def test_actions_run_in_order_with_the_message_file_and_failures_do_not_stop_others(
    layout: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    actions_dir, secure, unzipped = layout
    out = tmp_path / "out"
    _action(actions_dir, "first", RECORD.format(out=out, name="first"))
    _action(actions_dir, "broken", "#!/bin/sh\necho failing >&2\nexit 7\n")
    _action(actions_dir, "badshebang", "#!/nonexistent/interpreter\n")
    # From the payload, without an exec bit, as extracted.
    _action(unzipped, "from_payload", RECORD.format(out=out, name="from_payload"), mode=0o600)
    message = _message()
    with caplog.at_level(logging.INFO):
        results = await run_actions(
            ["first", "broken", "missing", "../first", "badshebang", "from_payload"],
            message,
            actions_dir,
            unzipped,
            True,
        )
    assert [(r.name, r.status) for r in results] == [
        ("first", 0),
        ("broken", 7),
        ("missing", None),
        ("../first", None),
        ("badshebang", None),
        ("from_payload", 0),
    ]
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert (results[4].error or "").startswith("could not run")
    assert (out / "first.json").read_text() == message.msg
    assert (out / "from_payload.json").read_text() == message.msg
    assert f"first: ran first in {secure}" in caplog.text
    assert "broken: failing" in caplog.text
    assert list(secure.glob("revocation-*.json")) == []  # message files removed


async def test_installed_action_wins_over_the_payload_one(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    actions_dir, _, unzipped = layout
    out = tmp_path / "out"
    _action(actions_dir, "act", RECORD.format(out=out, name="installed"))
    _action(unzipped, "act", RECORD.format(out=out, name="payload"))
    results = await run_actions(["act"], _message(), actions_dir, unzipped, True)
    assert results[0].path == actions_dir / "act"
    assert sorted(p.name for p in out.iterdir()) == ["installed.json"]


async def test_payload_actions_are_ignored_when_not_allowed(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    actions_dir, _, unzipped = layout
    _action(unzipped, "act", RECORD.format(out=tmp_path / "out", name="payload"))
    results = await run_actions(["act"], _message(), actions_dir, unzipped, False)
    assert results[0].status is None and results[0].error == "not found"
    assert list((tmp_path / "out").iterdir()) == []


async def test_hung_action_is_stopped_and_the_next_runs(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    actions_dir, _, unzipped = layout
    _action(actions_dir, "hang", "#!/bin/sh\nexec sleep 30\n")
    _action(actions_dir, "next", RECORD.format(out=tmp_path / "out", name="next"))
    results = await run_actions(
        ["hang", "next"], _message(), actions_dir, unzipped, True, timeout_s=0.3
    )
    assert results[0].status is None and "longer than" in (results[0].error or "")
    assert results[1].ok


def test_configured_actions_append_the_payload_list(layout: tuple[Path, Path, Path]) -> None:
    _, _, unzipped = layout
    assert configured_actions("a, b", unzipped) == ["a", "b"]
    (unzipped / "action_list").write_text("c\nd\n")
    assert configured_actions("[a]", unzipped) == ["a", "c", "d"]


def test_extracted_action_has_no_exec_bit_until_run(layout: tuple[Path, Path, Path]) -> None:
    _, _, unzipped = layout
    path = _action(unzipped, "x", "#!/bin/sh\n", mode=0o600)
    assert not stat.S_IMODE(path.stat().st_mode) & 0o100


# -- the composed handler --------------------------------------------------------------------


def _options(actions_dir: Path, actions: str = "mark") -> RevocationOptions:
    return RevocationOptions(
        revocation_cert="default",
        revocation_actions=actions,
        revocation_actions_dir=actions_dir,
        allow_payload_revocation_actions=True,
    )


async def test_handler_runs_actions_only_for_a_verified_notification(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    actions_dir, secure, unzipped = layout
    out = tmp_path / "out"
    _action(actions_dir, "mark", RECORD.format(out=out, name="mark"))
    options = _options(actions_dir)
    body, msg = notification(KEY)

    # Before the payload brings the certificate: ignored, nothing runs.
    with pytest.raises(NoRevocationCertError):
        await handle_notification(body, secure, options)
    assert list(out.iterdir()) == []

    (unzipped / "RevocationNotifier-cert.crt").write_bytes(CERT)
    forged, _ = notification(OTHER_KEY)
    for bad in (forged, resign(body, msg=msg.replace("revocation", "revocatioN"))):
        with pytest.raises(RevocationSignatureError):
            await handle_notification(bad, secure, options)
    assert list(out.iterdir()) == []

    message, results = await handle_notification(body, secure, options)
    assert message.msg == msg
    assert [(r.name, r.status) for r in results] == [("mark", 0)]
    assert (out / "mark.json").read_text() == msg


async def test_unwritable_work_dir_is_a_result_not_an_exception(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    actions_dir, _, unzipped = layout
    _action(actions_dir, "act", RECORD.format(out=tmp_path / "out", name="act"))
    results = await run_actions(
        ["act"], _message(), actions_dir, unzipped, True, work_dir=tmp_path / "gone"
    )
    assert results[0].status is None
    assert (results[0].error or "").startswith("cannot write the message file")
    assert list((tmp_path / "out").iterdir()) == []
