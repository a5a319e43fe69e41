"""Drop root for ``run_as = "user:group"``, as rust-keylime does (keylime/src/permissions.rs).

The agent starts as root to open the TPM device and mount the secure tmpfs, then becomes
``user:group`` for good.  The order matters: supplementary groups and the GID must be set
while still root, the UID last (after setuid(0 -> user) the process may no longer change its
groups).  ``setuid`` as root sets real, effective and saved UID together, so root cannot be
regained; that is checked by trying, and by reading back every id.

Call it once, early, before any worker thread exists (glibc applies set*id to all threads,
but a thread mid-way through a blocking call is best not raced), and after the TPM is open
and the secure directory mounted.

Errors::

    PrivilegeError          base; ``run_as`` and ``reason``
    └── RunAsFormatError    the value is not "user:group", or a name is unknown
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PrivilegeError", "RunAsFormatError", "drop_privileges", "parse_run_as"]

log = logging.getLogger(__name__)

_ROOT_UID = 0


class PrivilegeError(Exception):
    """Privileges could not be dropped to ``run_as``."""

    def __init__(self, run_as: str, reason: str) -> None:
        super().__init__(f"run_as {run_as!r}: {reason}")
        self.run_as = run_as
        self.reason = reason


class RunAsFormatError(PrivilegeError):
    """``run_as`` is not ``user:group`` naming an existing user and group."""


def parse_run_as(value: str) -> tuple[str, str]:
    """``("user", "group")`` from ``"user:group"``; both parts must be non-empty."""
    parts = value.split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise RunAsFormatError(value, "expected the form 'user:group'")
    return parts[0], parts[1]


def drop_privileges(run_as: str, *, chown_paths: Iterable[Path] = ()) -> None:
    """Become ``run_as`` ("user:group") for good; PrivilegeError if anything is off.

    ``chown_paths`` (the secure directory) are given to user:group first, while still root,
    so the agent can write K and the payload there afterwards (rust-keylime main.rs chowns
    the mount the same way before ``run_as``).
    """
    user_name, group_name = parse_run_as(run_as)
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        raise RunAsFormatError(run_as, f"no user {user_name!r}") from None
    try:
        gid = grp.getgrnam(group_name).gr_gid
    except KeyError:
        raise RunAsFormatError(run_as, f"no group {group_name!r}") from None
    for path in chown_paths:
        try:
            os.chown(path, user.pw_uid, gid, follow_symlinks=False)
        except OSError as exc:
            raise PrivilegeError(run_as, f"cannot chown {path}: {exc.strerror}") from exc
    try:
        groups = os.getgrouplist(user_name, gid)
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(user.pw_uid)
    except OSError as exc:
        raise PrivilegeError(run_as, f"cannot switch ids: {exc.strerror}") from exc
    _verify_dropped(run_as, user.pw_uid, gid)
    log.info("dropped privileges to %s (uid %d, gid %d)", run_as, user.pw_uid, gid)


def _verify_dropped(run_as: str, uid: int, gid: int) -> None:
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(run_as, "ids did not all change")
    if uid == _ROOT_UID:
        return  # run_as names root itself: nothing to regain
    try:
        os.setuid(_ROOT_UID)
    except PermissionError:
        return
    raise PrivilegeError(run_as, "the process could regain root after dropping it")
