"""The payload script: the start-up policy, running it, its output, its deadline."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import trio

from edge_agent.payload import (
    PayloadPolicyError,
    PayloadScriptError,
    ProgramTimeout,
    check_payload_policy,
    run_logged,
    run_payload_script,
)
from edge_agent.payload import script as script_module


@pytest.mark.parametrize(
    ("script", "mtls", "insecure", "refused"),
    [
        ("autorun.sh", False, False, True),
        ("autorun.sh", False, True, False),
        ("autorun.sh", True, False, False),
        ("autorun.sh", True, True, False),
        ("", False, False, False),
    ],
)
def test_start_up_policy(script: str, mtls: bool, insecure: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(PayloadPolicyError, match="enable_insecure_payload"):
            check_payload_policy(script, mtls, insecure)
    else:
        check_payload_policy(script, mtls, insecure)


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(body)
    path.chmod(0o600)  # as extracted: the runner must make it executable itself
    return path


async def test_script_runs_in_the_unzipped_dir_and_leaves_a_marker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_script(
        tmp_path,
        "autorun.sh",
        '#!/bin/sh\necho "started in $(pwd)"\necho "uuid=$AGENT_UUID" > marker\necho oops >&2\n',
    )
    with caplog.at_level(logging.INFO):
        status = await run_payload_script(
            tmp_path, "autorun.sh", allowed=True, agent_uuid="agent-1"
        )
    assert status == 0
    assert (tmp_path / "marker").read_text() == "uuid=agent-1\n"
    assert stat.S_IMODE((tmp_path / "autorun.sh").stat().st_mode) == 0o700
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, f"autorun.sh: started in {tmp_path}") in messages
    assert (logging.WARNING, "autorun.sh: oops") in messages


async def test_script_without_shebang_runs_under_sh(tmp_path: Path) -> None:
    write_script(tmp_path, "autorun.sh", "echo plain > marker\nexit 3\n")
    assert await run_payload_script(tmp_path, "autorun.sh", allowed=True) == 3
    assert (tmp_path / "marker").read_text() == "plain\n"


async def test_script_is_not_run_when_not_allowed(tmp_path: Path) -> None:
    write_script(tmp_path, "autorun.sh", "#!/bin/sh\ntouch marker\n")
    assert await run_payload_script(tmp_path, "autorun.sh", allowed=False) is None
    assert not (tmp_path / "marker").exists()


async def test_absent_or_unset_script_is_skipped(tmp_path: Path) -> None:
    assert await run_payload_script(tmp_path, "autorun.sh", allowed=True) is None
    assert await run_payload_script(tmp_path, "", allowed=True) is None


async def test_symlinked_script_is_not_run(tmp_path: Path) -> None:
    target = write_script(tmp_path, "real.sh", "#!/bin/sh\ntouch marker\n")
    (tmp_path / "autorun.sh").symlink_to(target)
    assert await run_payload_script(tmp_path, "autorun.sh", allowed=True) is None
    assert not (tmp_path / "marker").exists()


async def test_script_name_must_be_plain(tmp_path: Path) -> None:
    with pytest.raises(PayloadPolicyError, match="file name"):
        await run_payload_script(tmp_path, "../x.sh", allowed=True)


async def test_hung_script_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    write_script(tmp_path, "autorun.sh", "#!/bin/sh\nexec sleep 30\n")
    with trio.fail_after(20), pytest.raises(PayloadScriptError, match="longer than") as info:
        await run_payload_script(tmp_path, "autorun.sh", allowed=True, timeout_s=0.3)
    assert isinstance(info.value.__cause__, ProgramTimeout)
    assert info.value.__cause__.timeout_s == 0.3


async def test_long_lines_are_cut_and_a_final_line_without_newline_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edge_agent.payload.process"):
        status = await run_logged(
            ["/bin/sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; echo; printf tail"],
            name="long",
            cwd=tmp_path,
            timeout_s=20,
        )
    assert status == 0
    lengths = [len(r.getMessage()) for r in caplog.records]
    assert max(lengths) <= len("long: ") + 4096
    assert caplog.records[-1].getMessage() == "long: tail"


async def test_a_daemon_holding_the_pipes_does_not_hold_the_script(tmp_path: Path) -> None:
    # autorun.sh may start a service that inherits stdout; the script's exit is what counts.
    write_script(tmp_path, "autorun.sh", "#!/bin/sh\nsleep 12 &\necho started\nexit 0\n")
    start = trio.current_time()
    with trio.fail_after(15):
        assert await run_payload_script(tmp_path, "autorun.sh", allowed=True) == 0
    assert trio.current_time() - start < 10


async def test_program_that_cannot_start_raises_plain_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await run_logged([str(tmp_path / "absent")], name="absent", cwd=tmp_path, timeout_s=5)


async def test_script_that_cannot_start_is_a_payload_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_script(tmp_path, "autorun.sh", "#!/bin/sh\n")
    # A device without /bin/sh: the start fails with OSError, reported as a PayloadError.
    monkeypatch.setattr(script_module, "_SHELL", str(tmp_path / "no-such-shell"))
    with pytest.raises(PayloadScriptError, match="could not be run"):
        await run_payload_script(tmp_path, "autorun.sh", allowed=True)
