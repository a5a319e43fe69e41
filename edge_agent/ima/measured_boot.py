"""The measured-boot log (the UEFI/TCG2 event log the firmware left for the kernel).

The agent returns it base64-encoded as ``mb_measurement_list`` when the verifier asks for the
measured-boot PCRs (rust-keylime keylime-agent/src/quotes_handler.rs); parsing it is
:mod:`attest_protocol`'s and the verifier's job.  The log is fixed after boot, but securityfs
reports its size as 0 and its mtime as the mount time, so nothing cheap tells a stale cache
from a fresh read: it is read whole on every request (tens of KiB), in a worker thread.
``open_now()`` opens it once at start-up, before a ``run_as`` privilege drop (the file is
root-only), and later reads rewind that handle.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Optional

import trio

from edge_agent.ima.errors import MeasuredBootLogError

# rust-keylime's agent.conf default for ``measuredboot_ml_path`` (the TPM driver's securityfs
# export, drivers/char/tpm/eventlog/common.c).
DEFAULT_MEASUREDBOOT_ML_PATH = "/sys/kernel/security/tpm0/binary_bios_measurements"
# An event log is tens of KiB (a few hundred events); refuse anything absurd rather than
# loading it into memory and a JSON response.
MAX_MEASUREDBOOT_LOG_BYTES = 16 * 1024 * 1024


class MeasuredBootLogReader:
    """Reads the log at ``path`` on each call; ``None`` when the file does not exist."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_MEASUREDBOOT_ML_PATH) -> None:
        self.path = os.fspath(path)
        self._file: Optional[BinaryIO] = None

    def open_now(self) -> None:
        """Keep the log open (blocking); a missing file is not an error, as in ``read``."""
        try:
            self._file = open(self.path, "rb")  # kept open for the agent's life
        except FileNotFoundError:
            self._file = None
        except OSError as exc:
            raise MeasuredBootLogError(self.path, exc.strerror or str(exc)) from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_sync(self) -> Optional[bytes]:
        try:
            if self._file is not None:
                self._file.seek(0)
                data = self._file.read(MAX_MEASUREDBOOT_LOG_BYTES + 1)
            else:
                with open(self.path, "rb") as file:
                    data = file.read(MAX_MEASUREDBOOT_LOG_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MeasuredBootLogError(self.path, exc.strerror or str(exc)) from exc
        if len(data) > MAX_MEASUREDBOOT_LOG_BYTES:
            raise MeasuredBootLogError(self.path, f"larger than {MAX_MEASUREDBOOT_LOG_BYTES} bytes")
        return data

    async def read(self) -> Optional[bytes]:
        """The whole log, or ``None`` if absent; MeasuredBootLogError if unreadable."""
        return await trio.to_thread.run_sync(self.read_sync)
