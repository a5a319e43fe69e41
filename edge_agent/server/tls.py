"""The TLS files of the agent API server (app.py names them before the TPM is opened; the
server's SSL context is built from them by edge_agent.server.serve)."""

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
