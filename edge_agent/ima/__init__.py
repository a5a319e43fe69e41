"""The agent's measurement-log readers: the IMA list, read incrementally, and the boot log.

The readers own the files and the offsets; parsing the text is attest_protocol.ima's (and, by
the Keylime contract, the verifier's: the agent sends the text as it is)::

    reader = ImaLogReader.open(path)          # once, at start, before dropping privileges
    s = await reader.read_from(n)             # ImaSlice(start, text, count)
    await reader.aclose()
    await MeasuredBootLogReader(path).read()  # bytes, or None when the log does not exist

Errors::

    ImaReaderError                 path and OS reason; no log content
    ├── ImaLogOpenError            the IMA log could not be opened at start-up
    ├── ImaLogReadError            reading it failed while serving a request
    └── MeasuredBootLogError       the boot log exists but cannot be read (or is too large)
"""

from __future__ import annotations

from edge_agent.ima.checkpoints import CHECKPOINT_SPACING_ENTRIES, MAX_CHECKPOINTS, Checkpoints
from edge_agent.ima.errors import (
    ImaLogOpenError,
    ImaLogReadError,
    ImaReaderError,
    MeasuredBootLogError,
)
from edge_agent.ima.log_file import ImaLogFile, ImaSlice
from edge_agent.ima.log_reader import DEFAULT_IMA_ML_PATH, ImaLogReader
from edge_agent.ima.measured_boot import (
    DEFAULT_MEASUREDBOOT_ML_PATH,
    MAX_MEASUREDBOOT_LOG_BYTES,
    MeasuredBootLogReader,
)

__all__ = [
    "CHECKPOINT_SPACING_ENTRIES",
    "DEFAULT_IMA_ML_PATH",
    "DEFAULT_MEASUREDBOOT_ML_PATH",
    "MAX_CHECKPOINTS",
    "MAX_MEASUREDBOOT_LOG_BYTES",
    "Checkpoints",
    "ImaLogFile",
    "ImaLogOpenError",
    "ImaLogReadError",
    "ImaLogReader",
    "ImaReaderError",
    "ImaSlice",
    "MeasuredBootLogError",
    "MeasuredBootLogReader",
]
