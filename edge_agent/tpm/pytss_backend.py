"""The tpm2-pytss backend of the ``Tpm`` Protocol: a real TPM, or swtpm, through a TCTI.

ESAPI calls block (a hardware TPM takes tens to hundreds of milliseconds per command), so each
operation runs in ``trio.to_thread.run_sync`` behind a one-slot ``CapacityLimiter`` owned by
this instance: two tasks asking for a quote at once get whole, non-interleaved command
sequences, one after the other.  A worker thread that has started is never abandoned: a
cancelled caller waits for the TPM to finish, so the context is never left mid-command.

Usage::

    tpm = await PytssTpm.open(TpmConfig.from_options(...))
    try:
        quote = await tpm.quote(nonce, mask)
    finally:
        await tpm.aclose()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Optional, TypeVar

import trio

from attest_protocol.quote import KeylimeQuote
from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.protocol import AkInfo, EkInfo
from edge_agent.tpm.pytss_sync import EsysTpm, QuoteRaceHook

__all__ = ["PytssTpm", "open_tpm"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# One ESAPI context runs one command sequence at a time (ESYS answers a second, interleaved
# call with "Function called in the wrong order"), so one worker thread per TPM.
TPM_WORKER_SLOTS = 1
# rust-keylime tpm.rs Context::new prints the same three lines when the vendor is "SW".
_SOFTWARE_TPM_WARNING = (
    "INSECURE: the agent is using a software TPM emulator (%s), not a hardware TPM.",
    "INSECURE: attestation is NOT rooted in hardware.",
    "INSECURE: use this only for testing and development.",
)
# swtpm and the IBM simulator report this in TPM_PT_VENDOR_STRING_1..4 ("SW   TPM").
_SOFTWARE_VENDOR_MARK = "SW"


class PytssTpm:
    """A ``Tpm`` on tpm2-pytss.  Build it with :meth:`open`; call :meth:`aclose` at the end.

    ``quote_race_hook`` is for tests only: see ``pytss_sync.QuoteRaceHook``.
    """

    def __init__(self, sync: EsysTpm) -> None:
        self._sync = sync
        self._limiter = trio.CapacityLimiter(TPM_WORKER_SLOTS)
        self._closed = False

    @classmethod
    async def open(
        cls, config: TpmConfig, *, quote_race_hook: Optional[QuoteRaceHook] = None
    ) -> PytssTpm:
        """Connect to the TPM at ``config.tcti`` (TctiError if that fails)."""
        sync = await trio.to_thread.run_sync(EsysTpm.open, config, quote_race_hook)
        return cls.adopt(sync, config)

    @classmethod
    def adopt(cls, sync: EsysTpm, config: TpmConfig) -> PytssTpm:
        """Wrap an ``EsysTpm`` opened elsewhere (edge_agent.tpm.early); it is ours to close."""
        if config.is_software_tpm or _SOFTWARE_VENDOR_MARK in sync.vendor:
            first, *rest = _SOFTWARE_TPM_WARNING
            log.warning(first, config.tcti)
            for line in rest:
                log.warning(line)
        return cls(sync)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise trio.ClosedResourceError("the TPM connection is closed")
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def ek(self) -> EkInfo:
        return await self._run(self._sync.ek)

    async def ek_certificate(self) -> bytes:
        return await self._run(self._sync.ek_certificate)

    async def ak(self) -> AkInfo:
        return await self._run(self._sync.ak)

    async def read_pcrs(self, hash_alg: str, pcrs: Iterable[int]) -> dict[int, bytes]:
        return await self._run(self._sync.read_pcrs, hash_alg, list(pcrs))

    async def bind_data_pcr(self, nk_public_pem: bytes) -> None:
        await self._run(self._sync.bind_data_pcr, nk_public_pem)

    async def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        return await self._run(self._sync.quote, nonce, mask, hash_alg)

    async def activate_credential(self, blob: bytes) -> bytes:
        return await self._run(self._sync.activate_credential, blob)

    async def aclose(self) -> None:
        """Flush transient keys and close the context; later calls raise ClosedResourceError."""
        if self._closed:
            return
        # Shielded: aclose usually runs in a finally after a cancellation, and skipping it
        # would leave the AK and EK loaded in the TPM's few transient slots.
        with trio.CancelScope(shield=True):
            try:
                await self._run(self._sync.close)
            finally:
                self._closed = True


async def open_tpm(config: TpmConfig) -> PytssTpm:
    """The production TPM for ``config`` (the one place the agent picks a backend)."""
    return await PytssTpm.open(config)
