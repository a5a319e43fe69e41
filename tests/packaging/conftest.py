"""Session fixtures: the .debs and .rpms are built once, from the work tree, into tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.support import PACKAGING, require_tools, run


@pytest.fixture(scope="session")
def deb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("dpkg-buildpackage", "dh", "pybuild", "git")
    out = tmp_path_factory.mktemp("debs")
    run([PACKAGING / "build-deb", out])
    return out


@pytest.fixture(scope="session")
def rpm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("rpmbuild", "git")
    out = tmp_path_factory.mktemp("rpms")
    # Debian has none of Fedora's build requirements (python3-devel, *-rpm-macros); the spec
    # falls back to python3-build and python3-installer for them.
    run([PACKAGING / "build-rpm", out], env={"LIMELET_RPM_NODEPS": "1"})
    return out
