"""A second virtualenv with the oldest tpm2-pytss and trio the distributions ship.

Debian 13 and Ubuntu 24.04 carry tpm2-pytss 2.3.0 and trio 0.29, while the project's own
.venv has the newest releases. tpm2-pytss 2.1-2.3 give several ESAPI arguments no defaults
that 3.0 does (``policy_secret``'s nonce_tpm, cp_hash_a, policy_ref, expiration), so the agent
must be tested against both: ``tests/swtpm/test_pytss_versions.py`` runs the swtpm TPM-layer
tests with this venv's interpreter and the work tree on PYTHONPATH.

tpm2-pytss is built from its sdist against the system's libtss2 (Debian's libtss2-dev), as a
distribution builds it. The venv lives at ``${LIMELET_CACHE:-~/.cache/limelet}/pytss-2.3.0``.
Usage: ``python -m tools.pytss_venv ensure`` (scripts/setup calls it).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from tools.keylime_venv import (
    PIP_TIMEOUT_SECONDS,
    SYSTEM_PYTHON,
    KeylimeVenvError,
    _run,
    cache_root,
    ensure_stamped,
    expected_stamp,
    is_complete,
    venv_main,
)

__all__ = ["PYTSS_VERSION", "TRIO_VERSION", "ensure", "venv_dir", "venv_python"]

PYTSS_VERSION = "2.3.0"
TRIO_VERSION = "0.29.0"
# Debian 13's python3-cryptography: tpm2-pytss 2.3 imports Camellia from where cryptography
# >= 43.1 warns it is deprecated, which pytest's filterwarnings=error turns into an error.
CRYPTOGRAPHY_VERSION = "43.0.*"
# What the swtpm tests and their fixtures import, besides the work tree itself.
REQUIREMENTS = (
    f"tpm2-pytss=={PYTSS_VERSION}",
    f"trio=={TRIO_VERSION}",
    f"cryptography=={CRYPTOGRAPHY_VERSION}",
    "h11>=0.14",
    "pytest>=7.4",
    "pytest-trio>=0.8",
)
# Checked before the stamp is written: the versions asked for are the ones imported.
IMPORT_CHECK = (
    "import importlib.metadata as m, tpm2_pytss, trio; "
    "print(m.version('tpm2-pytss'), trio.__version__)"
)
STAMP_NAME = ".limelet-pytss-stamp"


def venv_dir() -> Path:
    return cache_root() / f"pytss-{PYTSS_VERSION}"


def venv_python() -> Path:
    """The venv's interpreter (the venv must exist: call :func:`ensure` first)."""
    return venv_dir() / "bin" / "python"


def ensure() -> Path:
    """Build the venv unless a finished one exists; return its directory."""
    venv = venv_dir()
    marker = venv / "bin" / "python"
    return ensure_stamped(
        venv,
        f".pytss-{PYTSS_VERSION}.lock",
        lambda: is_complete(venv, STAMP_NAME, REQUIREMENTS, marker),
        _build,
    )


def _build(venv: Path) -> None:
    started = time.monotonic()
    if venv.exists():
        print(f"pytss-venv: removing an unfinished or outdated venv at {venv}")
        shutil.rmtree(venv)
    print(f"pytss-venv: creating a virtualenv for tpm2-pytss {PYTSS_VERSION} at {venv}")
    _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], "create the virtualenv")
    print(f"pytss-venv: building tpm2-pytss {PYTSS_VERSION} against the system libtss2")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "--quiet", "--no-binary", "tpm2-pytss", *REQUIREMENTS]
    _run(install, "pip install", PIP_TIMEOUT_SECONDS)
    got = _run([str(venv / "bin" / "python"), "-c", IMPORT_CHECK], "import check").split()
    if got != [PYTSS_VERSION, TRIO_VERSION]:
        shutil.rmtree(venv)
        raise KeylimeVenvError(f"pytss-venv: asked for {PYTSS_VERSION} {TRIO_VERSION}, got {got}")
    (venv / STAMP_NAME).write_text(expected_stamp(REQUIREMENTS), encoding="utf-8")
    print(f"pytss-venv: ready in {time.monotonic() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    return venv_main(
        argv,
        prog="python -m tools.pytss_venv",
        what=f"tpm2-pytss {PYTSS_VERSION} with trio {TRIO_VERSION}",
        build=ensure,
        where=venv_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
