"""The TLS files of the agent API server, kept apart from ``serve`` so that naming them does
not import Hypercorn (app.py builds them before the TPM is opened; see ``preload``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["TlsFiles"]


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key files and the CA that client certificates must chain to."""

    certfile: Path
    keyfile: Path
    client_cas: tuple[Path, ...]
    keyfile_password: Optional[str] = None
