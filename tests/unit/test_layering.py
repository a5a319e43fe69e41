"""The import arrows run one way: components -> attest_protocol, never between components.

DESIGN.md: edge_agent, verifier_lite, registrar_lite and tenant_lite each import
attest_protocol; attest_protocol imports none of them (nor service_kit, trio, quart, httpx);
the services never import each other.  verifier_lite and registrar_lite may import
service_kit (the shared Quart/Hypercorn/Trio scaffolding), which imports attest_protocol and
no service.  The agent imports neither service_kit nor any web framework or ASGI server
(Quart, Hypercorn, httpx): its HTTP is h11, kept out of the agent install's dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("edge_agent", "verifier_lite", "registrar_lite", "tenant_lite")
# What each top-level package must not import (first dotted component of the module name).
FORBIDDEN: dict[str, frozenset[str]] = {
    "attest_protocol": frozenset(COMPONENTS)
    | {"service_kit", "trio", "quart", "quart_trio", "httpx", "hypercorn"},
    "service_kit": frozenset(COMPONENTS),
    "edge_agent": frozenset(COMPONENTS) - {"edge_agent"}
    | {"service_kit", "quart", "quart_trio", "hypercorn", "httpx"},
    "verifier_lite": frozenset(COMPONENTS) - {"verifier_lite"},
    "registrar_lite": frozenset(COMPONENTS) - {"registrar_lite"},
    # The tenant is a client: no server scaffolding.
    "tenant_lite": frozenset(COMPONENTS) - {"tenant_lite"} | {"service_kit"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downward(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    offenders = {
        str(f.relative_to(ROOT)): sorted(_imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_both_services_use_the_service_kit() -> None:
    """The shared scaffolding is used, not copied back: each service imports it."""
    for service in ("verifier_lite", "registrar_lite"):
        roots = set().union(*(_imported_roots(f) for f in (ROOT / service).rglob("*.py")))
        assert "service_kit" in roots, service


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_agent_daemon_does_not_import_its_command_line() -> None:
    """cli.py imports daemon.py (late, while the TPM opens); the reverse made a cycle."""
    assert "edge_agent.cli" not in _imported_modules(ROOT / "edge_agent" / "daemon.py")
