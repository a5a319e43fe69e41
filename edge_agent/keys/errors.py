"""What the keys package raises.

::

    AgentKeyError                   base
    ├── KeyFileError                a key or certificate file cannot be read or written
    └── KeyMaterialError            a file holds something other than the key we need
                                    (wrong type or size, bad password, not PEM)

Messages name the file and the problem, never key bytes or passwords.
"""

from __future__ import annotations

from pathlib import Path


class AgentKeyError(Exception):
    """Base of the keys package's errors."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class KeyFileError(AgentKeyError):
    """The file could not be read or written."""


class KeyMaterialError(AgentKeyError):
    """The file does not hold a usable key or certificate."""
