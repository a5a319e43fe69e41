"""run_as: parsing, and a real privilege drop in a child process (the tests run as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge_agent.privileges import PrivilegeError, RunAsFormatError, drop_privileges, parse_run_as

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("keylime:tss", ("keylime", "tss")), ("nobody:nogroup", ("nobody", "nogroup"))],
)
def test_parse_run_as(value: str, parsed: tuple[str, str]) -> None:
    assert parse_run_as(value) == parsed


@pytest.mark.parametrize("value", ["", "keylime", "keylime:", ":tss", "a:b:c", "keylime tss"])
def test_parse_run_as_refuses(value: str) -> None:
    with pytest.raises(RunAsFormatError, match="user:group"):
        parse_run_as(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("no-such-user-limelet:root", "no user"), ("root:no-such-group-limelet", "no group")],
)
def test_unknown_names_are_refused_before_anything_changes(value: str, reason: str) -> None:
    uid = os.getuid()
    with pytest.raises(RunAsFormatError, match=reason):
        drop_privileges(value)
    assert os.getuid() == uid


CHILD = """
import json, os, sys
from pathlib import Path
from edge_agent.privileges import PrivilegeError, drop_privileges
secure = Path(sys.argv[2])
drop_privileges(sys.argv[1], chown_paths=[secure])
report = {"res_uid": os.getresuid(), "res_gid": os.getresgid(), "groups": os.getgroups()}
(secure / "written-after-drop").write_text("ok")
try:
    os.setuid(0)
    report["regained"] = True
except PermissionError:
    report["regained"] = False
try:
    drop_privileges("root:root")
    report["second_drop"] = "succeeded"
except PrivilegeError as exc:
    report["second_drop"] = type(exc).__name__
print(json.dumps(report))
"""


def test_drop_to_nobody_in_a_child_process() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    # Directly under /tmp: nobody cannot traverse pytest's 0700 tmp_path parents.
    secure = Path(tempfile.mkdtemp(prefix="limelet-secure-"))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "nobody:nogroup", str(secure)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        written_by = (secure / "written-after-drop").stat().st_uid
        owner = secure.stat().st_uid
    finally:
        shutil.rmtree(secure)
    report = json.loads(proc.stdout)
    assert report["res_uid"] == [nobody.pw_uid] * 3
    assert report["res_gid"] == [nogroup.gr_gid] * 3
    assert 0 not in report["groups"]  # root's supplementary groups are gone
    assert report["regained"] is False
    assert report["second_drop"] == PrivilegeError.__name__
    assert written_by == nobody.pw_uid
    assert owner == nobody.pw_uid
