"""Revocation actions: the programs run when a verified revocation notification arrives.

Which actions (rust-keylime keylime-agent/src/revocation.rs ``run_revocation_actions``): the
``revocation_actions`` option (a list: ``a, b`` or ``[a, "b"]``) followed by the names in the
payload's ``unzipped/action_list`` file; ``configured_actions`` builds that list.

Where each is found (``lookup_action``): ``revocation_actions_dir/<name>`` first, then
``<secure>/unzipped/<name>`` when ``allow_payload_revocation_actions`` is true.  A name must
be a plain file name; rust-keylime's legacy Python-action shim is not supported.

How it is called: the verified message (``msg``, the JSON exactly as Keylime signed it) is
written to a temporary file and its path is the one argument; the working directory is
``work_dir``.  Each action has ACTION_TIMEOUT_SECONDS and its output is logged by line.

One difference from rust-keylime, on purpose: rust stops at the first failing action;
here a failing, missing or hung action is logged and the next still runs, so one broken
script cannot keep the others (e.g. the one that drops a compromised peer) from running.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import trio

from edge_agent.payload.process import ProgramTimeout, run_logged
from edge_agent.revocation.verify import RevocationMessage

__all__ = [
    "ACTION_LIST_FILE",
    "ACTION_TIMEOUT_SECONDS",
    "ActionResult",
    "configured_actions",
    "parse_action_list",
    "run_actions",
]

log = logging.getLogger(__name__)

# A revocation action reconfigures the network or drops keys: seconds of work.  A minute
# bounds a hung one without cutting a slow device short.
ACTION_TIMEOUT_SECONDS = 60.0
# The payload's list of extra actions (rust-keylime payloads.rs / revocation.rs).
ACTION_LIST_FILE = "action_list"
# The list file is a handful of names.
MAX_ACTION_LIST_BYTES = 64 * 1024
_PAYLOAD_ACTION_MODE = 0o700
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
# A list item: 'quoted', "quoted" or a bare word; separators are commas and white space
# (rust-keylime keylime/src/list.pest).
_ITEM_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"|([^\s,\[\]'\"]+)")


@dataclass(frozen=True)
class ActionResult:
    """One action's outcome: ``status`` is its exit status, None when it did not finish."""

    name: str
    path: Optional[Path]
    status: Optional[int]
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == 0


def parse_action_list(text: str) -> list[str]:
    """The names in a ``revocation_actions`` value or an ``action_list`` file."""
    names = []
    for match in _ITEM_RE.finditer(text.strip().removeprefix("[").removesuffix("]")):
        name = next(group for group in match.groups() if group is not None)
        if name:
            names.append(name)
    return names


def configured_actions(revocation_actions: str, payload_actions_dir: Path) -> list[str]:
    """The option's actions, then the payload's ``action_list`` ones. Blocking (one read)."""
    names = parse_action_list(revocation_actions)
    list_file = payload_actions_dir / ACTION_LIST_FILE
    try:
        with list_file.open("rb") as stream:
            data = stream.read(MAX_ACTION_LIST_BYTES)
    except FileNotFoundError:
        return names
    except OSError as exc:
        log.warning("cannot read %s: %s", list_file, exc.strerror)
        return names
    return names + parse_action_list(data.decode("utf-8", errors="replace"))


async def run_actions(
    actions: Sequence[str],
    message: RevocationMessage,
    actions_dir: Path,
    payload_actions_dir: Path,
    allow_payload_revocation_actions: bool,
    *,
    work_dir: Optional[Path] = None,
    timeout_s: float = ACTION_TIMEOUT_SECONDS,
) -> list[ActionResult]:
    """Run each action in order with the message file; every outcome, in order.

    Raises nothing for an action that fails in any way: that is in its ActionResult.

    ``work_dir`` (default: the secure directory, ``payload_actions_dir``'s parent) holds the
    temporary message file and is the actions' working directory.
    """
    cwd = work_dir if work_dir is not None else payload_actions_dir.parent
    results = []
    for name in actions:
        path = _lookup(name, actions_dir, payload_actions_dir, allow_payload_revocation_actions)
        if path is None:
            log.error("revocation action %s not found", name)
            results.append(ActionResult(name, None, None, "not found"))
            continue
        results.append(await _run_one(name, path, message, cwd, timeout_s))
    return results


def _lookup(name: str, actions_dir: Path, payload_dir: Path, allow_payload: bool) -> Optional[Path]:
    if "/" in name or name in (".", "..") or "\x00" in name:
        return None
    candidates = [actions_dir / name]
    if allow_payload:
        candidates.append(payload_dir / name)
    return next((path for path in candidates if path.is_file()), None)


async def _run_one(
    name: str, path: Path, message: RevocationMessage, cwd: Path, timeout_s: float
) -> ActionResult:
    try:
        message_file = await trio.to_thread.run_sync(_write_message, cwd, message.msg)
    except OSError as exc:
        log.error("revocation action %s: cannot write the message file: %s", name, exc)
        return ActionResult(name, path, None, f"cannot write the message file: {exc.strerror}")
    try:
        if not os.access(path, os.X_OK):
            # Payload actions arrive without an exec bit kept; rust-keylime sets 0700 too.
            await trio.to_thread.run_sync(os.chmod, path, _PAYLOAD_ACTION_MODE)
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        log.info("running revocation action %s", path)
        status = await run_logged(
            [str(path), str(message_file)], name=name, cwd=cwd, timeout_s=timeout_s, env=env
        )
    except ProgramTimeout as exc:
        log.error("revocation action %s: %s", name, exc)
        return ActionResult(name, path, None, str(exc))
    except OSError as exc:
        log.error("revocation action %s could not run: %s", name, exc)
        return ActionResult(name, path, None, f"could not run: {exc.strerror}")
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: message_file.unlink(missing_ok=True))
    if status != 0:
        log.error("revocation action %s exited %d", name, status)
    return ActionResult(name, path, status)


def _write_message(directory: Path, msg: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="revocation-", suffix=".json", dir=directory)
    with os.fdopen(fd, "wb") as stream:
        stream.write(msg.encode("utf-8"))
    return Path(name)
