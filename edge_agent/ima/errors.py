"""Errors of the agent's IMA and measured-boot log readers (tree drawn in the package docstring).

Messages name the log's path and the OS reason, never any log content.
"""

from __future__ import annotations


class ImaReaderError(Exception):
    """A measurement log could not be opened or read; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ImaLogOpenError(ImaReaderError):
    """The IMA log could not be opened at start-up."""


class ImaLogReadError(ImaReaderError):
    """Reading the IMA log failed while serving a request."""


class MeasuredBootLogError(ImaReaderError):
    """The measured-boot (UEFI event) log exists but could not be read."""
