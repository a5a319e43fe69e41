"""A private virtualenv holding Keylime 6.6.0, the last release with a Python agent.

Keylime 6.6.0's ``keylime_agent`` drives the TPM through tpm2-tools (``tpm2_createek``,
``tpm2_createak``, ``tpm2_activatecredential``) and speaks REST API 2.0/2.1; the interop test
runs it, unmodified, against registrar_lite.  It lives beside the Keylime 7.14.3 venv, under
``${LIMELET_CACHE:-~/.cache/limelet}/keylime-6.6.0``, built the same way (see
:mod:`tools.keylime_venv`): on ``/usr/bin/python3`` with Debian's ``gpg`` module linked in,
because ``keylime.signing`` imports it.

Usage: ``python -m tools.keylime_agent66 ensure``.  A stamp file written last marks a finished
build; a venv without a matching stamp is half-built and is rebuilt.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tools.keylime_venv import (
    PIP_TIMEOUT_SECONDS,
    SYSTEM_PYTHON,
    _run,
    _site_packages,
    _system_gpg_package,
    cache_root,
    ensure_stamped,
    expected_stamp,
    is_complete,
    venv_main,
)

__all__ = [
    "AGENT_VERSION",
    "LOGGING_CONF",
    "agent_bin",
    "ensure",
    "venv_dir",
]

AGENT_VERSION = "6.6.0"

# Keylime 6.6.0's wheel has no Requires-Dist either; these are the imports its agent makes
# (keylime_agent, tpm/tpm_main, registrar_client, web_util, revocation_notifier, ima/).
# Unpinned on purpose, as for 7.14.3: only Keylime itself is pinned.
RUNTIME_REQUIREMENTS = (
    "tornado",
    "pyyaml",
    "requests",
    "psutil",
    "cryptography",
    "packaging",
    "pyasn1",
    "pyasn1-modules",
    "lark",
    "typing_extensions",
)
REQUIREMENTS = (f"keylime=={AGENT_VERSION}", *RUNTIME_REQUIREMENTS)

# Every Keylime module calls logging.config.fileConfig() on import, so even the import check
# needs a logging config (KEYLIME_LOGGING_CONFIG); this one sends everything to stderr.
LOGGING_CONF = """\
[loggers]
keys = root,keylime

[handlers]
keys = stderr

[formatters]
keys = plain

[formatter_plain]
format = %(asctime)s %(levelname)s %(name)s: %(message)s

[handler_stderr]
class = StreamHandler
level = DEBUG
formatter = plain
args = (sys.stderr,)

[logger_root]
level = INFO
handlers = stderr

[logger_keylime]
level = DEBUG
handlers =
qualname = keylime
"""

IMPORT_CHECK = "import gpg, keylime.keylime_agent, keylime.cmd.agent"
STAMP_NAME = ".limelet-keylime-stamp"


def venv_dir() -> Path:
    return cache_root() / f"keylime-{AGENT_VERSION}"


def agent_bin() -> Path:
    """The venv's ``keylime_agent`` program (the venv must exist: call :func:`ensure` first)."""
    return venv_dir() / "bin" / "keylime_agent"


def ensure() -> Path:
    """Create the Keylime 6.6.0 venv if it is missing or half-built; return its directory."""
    venv = venv_dir()
    marker = agent_bin()
    return ensure_stamped(
        venv,
        f".keylime-{AGENT_VERSION}.lock",
        lambda: is_complete(venv, STAMP_NAME, REQUIREMENTS, marker),
        _build,
    )


def _build(venv: Path) -> None:
    started = time.monotonic()
    if venv.exists():
        print(f"keylime-agent66: removing an unfinished or outdated venv at {venv}")
        shutil.rmtree(venv)
    gpg_dir = _system_gpg_package()
    print(f"keylime-agent66: creating a virtualenv for Keylime {AGENT_VERSION} at {venv}")
    _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], "create the virtualenv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", *REQUIREMENTS], "pip install", PIP_TIMEOUT_SECONDS)
    (_site_packages(venv) / "gpg").symlink_to(gpg_dir, target_is_directory=True)
    print("keylime-agent66: checking that the agent imports")
    with tempfile.TemporaryDirectory(prefix="limelet-kl66-check-") as scratch:
        logging_conf = Path(scratch) / "logging.conf"
        logging_conf.write_text(LOGGING_CONF, encoding="utf-8")
        env = {
            **os.environ,
            "KEYLIME_DIR": scratch,
            "KEYLIME_LOGGING_CONFIG": str(logging_conf),
        }
        _run(
            [str(venv / "bin" / "python"), "-c", IMPORT_CHECK], "import check", env=env, cwd=scratch
        )
    (venv / STAMP_NAME).write_text(expected_stamp(REQUIREMENTS), encoding="utf-8")
    print(f"keylime-agent66: ready in {time.monotonic() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    return venv_main(
        argv,
        prog="python -m tools.keylime_agent66",
        what=f"Keylime {AGENT_VERSION}'s agent",
        build=ensure,
        where=venv_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
