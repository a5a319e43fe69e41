"""What a built .deb's Python code imports, and which Debian package brings each module.

Each binary package must Depend on what its own modules import: a verifier that gets httpx
only because the agent package happened to pull it in dies at import on a host that has the
verifier alone (issue 14).  The modules are read from the .deb itself, with ``ast``, so a new
import without a new Depends fails the test that uses this.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from tests.packaging.support import run

# Import name -> the Debian packages (Debian 13 names) that may satisfy it.  quart and werkzeug
# come with python3-quart-trio, which Depends on python3-quart, which Depends on werkzeug.
DEBIAN_NAMES: dict[str, tuple[str, ...]] = {
    "cryptography": ("python3-cryptography",),
    "trio": ("python3-trio",),
    "h11": ("python3-h11",),
    "tpm2_pytss": ("python3-tpm2-pytss",),
    "httpx": ("python3-httpx",),
    "hypercorn": ("python3-hypercorn",),
    "prometheus_client": ("python3-prometheus-client",),
    "quart_trio": ("python3-quart-trio",),
    "quart": ("python3-quart", "python3-quart-trio"),
    "werkzeug": ("python3-werkzeug", "python3-quart", "python3-quart-trio"),
    # Backports that Python >= 3.11 does not need; pybuild writes "python3-X | python3 (>> 3.11)".
    "tomli": ("python3-tomli",),
    "exceptiongroup": ("python3-exceptiongroup",),
}
# Optional stores: imported only when configured, so a Suggests is enough.
OPTIONAL = {"psycopg": "python3-psycopg"}
# limelet's own top-level packages and the binary package that ships each.
OWN = {
    "attest_protocol": "python3-limelet",
    "service_kit": "python3-limelet-service",
    "edge_agent": "limelet-agent",
    "registrar_lite": "limelet-registrar",
    "verifier_lite": "limelet-verifier",
    "tenant_lite": "limelet-tenant",
}


def imported_modules(deb: Path, scratch: Path) -> set[str]:
    """Top-level names of every absolute import in the package's .py files."""
    run(["dpkg-deb", "-x", deb, scratch])
    names: set[str] = set()
    for source in scratch.glob("usr/lib/python3*/dist-packages/**/*.py"):
        names |= _imports(ast.parse(source.read_bytes(), filename=str(source)))
    return names


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def relation_names(field: str) -> set[str]:
    """Package names in a Depends-style field, alternatives included, versions dropped."""
    found = set()
    for part in re.split(r"[,|]", field):
        name = part.strip().split(" ")[0].split(":")[0]
        if name:
            found.add(name)
    return found
