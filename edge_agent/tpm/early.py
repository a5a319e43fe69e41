"""Opening the TPM while the rest of the agent is still being imported.

The agent's first TPM work (importing tpm2-pytss, the ESAPI context, the EK, the AK) mostly
waits on the TPM: TPM2_CreatePrimary of the RSA-2048 EK (``ek_handle = "generate"``) takes
~150 ms on swtpm and longer on many hardware TPMs, and ESAPI calls release the GIL while they
wait.  Importing trio and the agent's own modules takes ~0.3 s of CPU.  Done one
after the other they add up; ``cli.main`` therefore starts an ``EarlyTpm`` as soon as the
configuration is read, and ``run_agent`` takes the opened TPM over through :meth:`open`, its
``open_tpm``, at the point where it would have opened it itself (bench/agent_footprint.py).

Nothing changes in what the agent does or in which order it reports failures: a TCTI or TPM
error met here is raised again by :meth:`open`, where ``run_agent`` would have met it, and
an EK or AK that could not be prepared here is simply prepared again by the agent's own
``tpm.ek()``/``tpm.ak()`` calls, which then raise.  If the agent stops before it takes the
TPM (a configuration error found later), :meth:`discard` closes it.

The thread is a daemon thread outside the trio nursery because trio is not running yet
(and not imported: that import is part of what this overlaps).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.errors import TpmError

if TYPE_CHECKING:
    from edge_agent.tpm.protocol import Tpm
    from edge_agent.tpm.pytss_sync import EsysTpm

__all__ = ["EarlyTpm"]

log = logging.getLogger(__name__)


class EarlyTpm:
    """A TPM being opened in a background thread, for one ``run_agent`` to take over."""

    def __init__(self, config: TpmConfig) -> None:
        self.config = config
        self._sync: Optional[EsysTpm] = None
        self._error: Optional[Exception] = None
        self._taken = False
        self._thread = threading.Thread(target=self._prepare, name="TPM open", daemon=True)

    @classmethod
    def start(cls, config: TpmConfig) -> EarlyTpm:
        early = cls(config)
        early._thread.start()
        return early

    def _prepare(self) -> None:
        try:
            from edge_agent.tpm.pytss_sync import EsysTpm

            self._sync = EsysTpm.open(self.config)
        except Exception as exc:  # noqa: BLE001 -- not swallowed: open() raises it again
            self._error = exc
            return
        try:
            self._sync.ek()
            self._sync.ak()
        except TpmError as exc:
            # Not lost: the agent's own ek()/ak() try again and raise it in their turn.
            log.debug("EK/AK not prepared early: %s", exc)

    async def open(self, config: TpmConfig) -> Tpm:
        """The ``open_tpm`` of ``run_agent``: the TPM opened early, or its error."""
        import trio

        from edge_agent.tpm.pytss_backend import PytssTpm

        if config != self.config or self._taken:
            raise RuntimeError("EarlyTpm opened for another configuration, or taken twice")
        await trio.to_thread.run_sync(self._thread.join)
        self._taken = True
        if self._error is not None:
            raise self._error
        if self._sync is None:  # the thread died of a BaseException; it was printed
            raise RuntimeError("the TPM open thread failed")
        return PytssTpm.adopt(self._sync, config)

    def discard(self) -> None:
        """Close the TPM if ``run_agent`` never took it (waits for the thread first)."""
        self._thread.join()
        if not self._taken and self._sync is not None:
            self._taken = True
            self._sync.close()
