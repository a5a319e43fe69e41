"""Helpers for the tenant tests: a config file, one CLI run, the result decoded.

``run_tenant`` calls ``tenant_lite.cli.main`` in this process (with ``--json``) and returns
its exit code and decoded output; a test serving a peer in Trio calls it through
``trio.to_thread.run_sync`` so the peer keeps answering.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from tenant_lite.cli import main

Option = Union[str, int, float, bool]


def write_config(path: Path, **options: Option) -> Path:
    lines = []
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class TenantRun:
    code: int
    out: str
    err: str

    @property
    def body(self) -> dict[str, Any]:
        """The ``--json`` document: ``{"ok": true, "result": ...}`` or the error."""
        decoded: dict[str, Any] = json.loads(self.out)
        return decoded

    @property
    def result(self) -> Any:
        assert self.body["ok"] is True, self
        return self.body["result"]


def run_tenant(config: Path, *args: str) -> TenantRun:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-c", str(config), "--json", *args])
    return TenantRun(code, out.getvalue(), err.getvalue())
