"""A private virtualenv holding real Keylime 7.14.3, the peer our interop tests run against.

Keylime is never imported by limelet; tests only run its programs (``keylime_verifier``,
``keylime_registrar``, ``keylime_tenant``) and short snippets in its interpreter. It lives in a
virtualenv of its own, under ``${LIMELET_CACHE:-~/.cache/limelet}/keylime-7.14.3``, because:

* Keylime's wheel declares none of its runtime dependencies, so they are listed here;
* it imports ``gpg``, which exists only as Debian's compiled ``python3-gpg`` package for
  ``/usr/bin/python3``; the venv is built on that interpreter and sees only that one package
  (a symlink in its site-packages), not the rest of Debian's dist-packages.

Usage: ``python -m tools.keylime_venv ensure`` (scripts/setup calls it). A stamp file written
last marks a finished build; a venv without a matching stamp is half-built and is rebuilt.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "KEYLIME_VERSION",
    "KeylimeVenvError",
    "ensure",
    "keylime_bin",
    "keylime_python",
    "venv_dir",
]

KEYLIME_VERSION = "7.14.3"

# The interpreter python3-gpg is compiled for (Debian 12: CPython 3.11). Keylime 7.14 itself
# needs Python >= 3.10 (it uses `match`).
SYSTEM_PYTHON = Path("/usr/bin/python3")

# Keylime's wheel has no Requires-Dist; these are the imports its verifier, registrar, tenant
# and tpm_util make at run time. Unpinned on purpose: only Keylime itself is pinned.
RUNTIME_REQUIREMENTS = (
    "tornado",
    "sqlalchemy",
    "alembic",
    "pyyaml",
    "requests",
    "pyasn1",
    "pyasn1-modules",
    "lark",
    "jsonschema",
    "jinja2",
    "psutil",
    "cryptography",
    "packaging",
    "typing_extensions",
)
REQUIREMENTS = (f"keylime=={KEYLIME_VERSION}", *RUNTIME_REQUIREMENTS)

# Programs the tests may run from the venv's bin/.
KEYLIME_PROGRAMS = frozenset(
    {"keylime_verifier", "keylime_registrar", "keylime_tenant", "keylime_ca", "keylime-policy"}
)

# What a finished venv must import; checked before the stamp is written.
IMPORT_CHECK = "import gpg, keylime.tpm.tpm_util, keylime.cmd.verifier, keylime.cmd.registrar"

STAMP_NAME = ".limelet-keylime-stamp"
PIP_TIMEOUT_SECONDS = 900  # a cold pip install over a slow mirror
CHECK_TIMEOUT_SECONDS = 120


class KeylimeVenvError(RuntimeError):
    """Building or finding the Keylime virtualenv failed; the message says which step."""


def cache_root() -> Path:
    """``$LIMELET_CACHE`` or ``~/.cache/limelet``."""
    configured = os.environ.get("LIMELET_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "limelet"


def venv_dir() -> Path:
    return cache_root() / f"keylime-{KEYLIME_VERSION}"


def keylime_python() -> Path:
    """The Keylime venv's interpreter (the venv must exist: call :func:`ensure` first)."""
    return venv_dir() / "bin" / "python"


def keylime_bin(name: str) -> Path:
    """Path of one of Keylime's programs in the venv, e.g. ``keylime_bin("keylime_tenant")``."""
    if name not in KEYLIME_PROGRAMS:
        raise ValueError(
            f"unknown Keylime program {name!r}; expected one of {sorted(KEYLIME_PROGRAMS)}"
        )
    return venv_dir() / "bin" / name


def expected_stamp(requirements: tuple[str, ...]) -> str:
    """What a finished venv's stamp file holds.

    The stamp records what was asked for, so changing a module's requirements rebuilds.  The
    resolved interpreter (e.g. /usr/bin/python3.11) catches a Debian upgrade that would leave
    the venv's python symlink and python3-gpg's compiled module mismatched.
    """
    python = os.path.realpath(SYSTEM_PYTHON)
    return json.dumps({"python": python, "requirements": list(requirements)}, sort_keys=True)


def is_complete(venv: Path, stamp_name: str, requirements: tuple[str, ...], marker: Path) -> bool:
    """The venv was finished for these requirements, and ``marker`` (a program in it) exists."""
    try:
        stamp = (venv / stamp_name).read_text(encoding="utf-8")
    except OSError:
        return False
    return stamp == expected_stamp(requirements) and marker.exists()


def ensure_stamped(
    venv: Path, lock_name: str, complete: Callable[[], bool], build: Callable[[Path], None]
) -> Path:
    """Build ``venv`` unless ``complete()``; concurrent callers serialise on a lock file."""
    if complete():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(venv.parent / lock_name):
        if not complete():  # another process may have finished it while we waited
            build(venv)
    return venv


def _is_complete(venv: Path) -> bool:
    return is_complete(venv, STAMP_NAME, REQUIREMENTS, venv / "bin" / "python")


def ensure() -> Path:
    """Create the Keylime venv if it is missing or half-built; return its directory.

    Idempotent and cheap once built (one stamp-file read).
    """
    venv = venv_dir()
    return ensure_stamped(
        venv, f".keylime-{KEYLIME_VERSION}.lock", lambda: _is_complete(venv), _build
    )


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(venv: Path) -> None:
    started = time.monotonic()
    if venv.exists():
        print(f"keylime-venv: removing an unfinished or outdated venv at {venv}")
        shutil.rmtree(venv)
    gpg_dir = _system_gpg_package()
    print(f"keylime-venv: creating a virtualenv for Keylime {KEYLIME_VERSION} at {venv}")
    _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], "create the virtualenv")
    print("keylime-venv: installing Keylime and its runtime dependencies with pip")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", *REQUIREMENTS], "pip install", PIP_TIMEOUT_SECONDS)
    link = _site_packages(venv) / "gpg"
    print(f"keylime-venv: exposing Debian's gpg module ({gpg_dir}) to the venv")
    link.symlink_to(gpg_dir, target_is_directory=True)
    print("keylime-venv: checking that Keylime imports")
    with tempfile.TemporaryDirectory(prefix="limelet-kl-check-") as scratch:
        # KEYLIME_DIR and cwd point at scratch space: importing Keylime must touch nothing else.
        env = {**os.environ, "KEYLIME_DIR": scratch}
        _run(
            [str(venv / "bin" / "python"), "-c", IMPORT_CHECK], "import check", env=env, cwd=scratch
        )
    (venv / STAMP_NAME).write_text(expected_stamp(REQUIREMENTS), encoding="utf-8")
    print(f"keylime-venv: ready in {time.monotonic() - started:.0f} s")


def _system_gpg_package() -> Path:
    """Directory of the ``gpg`` package that ``/usr/bin/python3`` imports (python3-gpg)."""
    if not SYSTEM_PYTHON.exists():
        raise KeylimeVenvError(f"{SYSTEM_PYTHON} is missing (install Debian's python3)")
    probe = "import gpg, os; print(os.path.dirname(gpg.__file__))"
    try:
        out = _run([str(SYSTEM_PYTHON), "-I", "-c", probe], "find python3-gpg")
    except KeylimeVenvError as exc:
        raise KeylimeVenvError(f"{exc}\n(install Debian's python3-gpg package)") from exc
    return Path(out.strip())


def _site_packages(venv: Path) -> Path:
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(venv / "bin" / "python"), "-c", probe], "find site-packages").strip())


def _run(
    argv: list[str],
    what: str,
    timeout: float = CHECK_TIMEOUT_SECONDS,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> str:
    """Run one build step, quietly; on failure raise with its output."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KeylimeVenvError(f"keylime-venv: {what} failed: {exc}") from exc
    if proc.returncode != 0:
        raise KeylimeVenvError(
            f"keylime-venv: {what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def venv_main(
    argv: list[str] | None,
    *,
    prog: str,
    what: str,
    build: Callable[[], Path],
    where: Callable[[], Path],
) -> int:
    """The ``ensure|path`` command line shared by the Keylime virtualenv tools."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Manage the virtualenv of {what}.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="build the venv unless a finished one exists")
    sub.add_parser("path", help="print the venv directory")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(where())
        return 0
    try:
        venv = build()
    except KeylimeVenvError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{prog}: {what} is ready at {venv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return venv_main(
        argv,
        prog="python -m tools.keylime_venv",
        what=f"real Keylime {KEYLIME_VERSION}",
        build=ensure,
        where=venv_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
