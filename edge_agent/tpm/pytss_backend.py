"""The tpm2-pytss backend of the ``Tpm`` Protocol: a real TPM, or swtpm, through a TCTI.

ESAPI calls block (a hardware TPM takes tens to hundreds of milliseconds per command), so each
operation runs in ``trio.to_thread.run_sync`` behind a one-slot ``CapacityLimiter`` owned by
this instance: two tasks asking for a quote at once get whole, non-interleaved command
sequences, one after the other.  A worker thread that has started is never abandoned: a
cancelled caller waits for the TPM to finish, so the context is never left mid-command.

A transport or resource failure (edge_agent.tpm.recovery) does not wedge the agent: the
context is closed, a new one is opened (flushing leftovers, reloading the same AK) and the
operation runs once more; while no context can be had, callers get TpmUnavailable at once
and a new attempt is made after a growing delay (``Backoff``).

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
from edge_agent.tpm.errors import TpmError
from edge_agent.tpm.protocol import AkInfo, EkInfo
from edge_agent.tpm.pytss_sync import EsysTpm, QuoteRaceHook
from edge_agent.tpm.recovery import OPERATION_ATTEMPTS, Backoff, is_transient_error

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

    def __init__(
        self, sync: EsysTpm, config: TpmConfig, quote_race_hook: Optional[QuoteRaceHook] = None
    ) -> None:
        self._sync: Optional[EsysTpm] = sync
        self._config = config
        self._race_hook = quote_race_hook
        self._limiter = trio.CapacityLimiter(TPM_WORKER_SLOTS)
        # Held across a whole operation, a reopen included, so callers never interleave.
        self._lock = trio.Lock()
        self._backoff = Backoff()
        self._closed = False

    @classmethod
    async def open(
        cls, config: TpmConfig, *, quote_race_hook: Optional[QuoteRaceHook] = None
    ) -> PytssTpm:
        """Connect to the TPM at ``config.tcti`` (TctiError if that fails)."""
        sync = await trio.to_thread.run_sync(EsysTpm.open, config, quote_race_hook)
        return cls.adopt(sync, config, quote_race_hook)

    @classmethod
    def adopt(
        cls, sync: EsysTpm, config: TpmConfig, quote_race_hook: Optional[QuoteRaceHook] = None
    ) -> PytssTpm:
        """Wrap an ``EsysTpm`` opened elsewhere (edge_agent.tpm.early); it is ours to close."""
        if config.is_software_tpm or _SOFTWARE_VENDOR_MARK in sync.vendor:
            first, *rest = _SOFTWARE_TPM_WARNING
            log.warning(first, config.tcti)
            for line in rest:
                log.warning(line)
        return cls(sync, config, quote_race_hook)

    async def _run(self, op: Callable[[EsysTpm], T]) -> T:
        """``op`` on the context in the worker thread; a transient failure reopens it.

        After a transport or resource error the context is closed, and the operation is tried
        once more on a new one; when that cannot be had the caller gets TpmUnavailable and the
        next caller tries again once the backoff allows.
        """
        if self._closed:
            raise trio.ClosedResourceError("the TPM connection is closed")
        async with self._lock:
            for _attempt in range(OPERATION_ATTEMPTS):
                sync = await self._connected()
                try:
                    result = await trio.to_thread.run_sync(op, sync, limiter=self._limiter)
                except TpmError as exc:
                    if not is_transient_error(exc):
                        raise
                    await self._lose(sync, exc)
                    continue
                self._backoff.succeeded()
                return result
            raise self._backoff.unavailable(trio.current_time())

    async def _connected(self) -> EsysTpm:
        if self._sync is not None:
            return self._sync
        now = trio.current_time()
        if not self._backoff.may_retry(now):
            raise self._backoff.unavailable(now)
        try:
            self._sync = await trio.to_thread.run_sync(self._reopen, limiter=self._limiter)
        except TpmError as exc:
            if not is_transient_error(exc):
                raise
            self._backoff.failed(trio.current_time(), str(exc))
            raise self._backoff.unavailable(trio.current_time()) from exc
        log.warning("TPM connection reopened")
        return self._sync

    def _reopen(self) -> EsysTpm:
        """A new context with the EK and the stored AK loaded (blocking)."""
        sync = EsysTpm.open(self._config, self._race_hook)
        try:
            sync.ak()
        except BaseException:
            _close_quietly(sync)
            raise
        return sync

    async def _lose(self, sync: EsysTpm, exc: TpmError) -> None:
        log.warning("TPM connection failed, reopening it: %s", exc)
        self._sync = None
        self._backoff.failed(trio.current_time(), str(exc))
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close_quietly, sync, limiter=self._limiter)

    async def ek(self) -> EkInfo:
        return await self._run(lambda sync: sync.ek())

    async def ek_certificate(self) -> bytes:
        return await self._run(lambda sync: sync.ek_certificate())

    async def ak(self) -> AkInfo:
        return await self._run(lambda sync: sync.ak())

    async def read_pcrs(self, hash_alg: str, pcrs: Iterable[int]) -> dict[int, bytes]:
        wanted = list(pcrs)
        return await self._run(lambda sync: sync.read_pcrs(hash_alg, wanted))

    async def bind_data_pcr(self, nk_public_pem: bytes) -> None:
        await self._run(lambda sync: sync.bind_data_pcr(nk_public_pem))

    async def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        return await self._run(lambda sync: sync.quote(nonce, mask, hash_alg))

    async def bound_quote(
        self, nk_public_pem: bytes, nonce: bytes, mask: int, hash_alg: Optional[str] = None
    ) -> KeylimeQuote:
        return await self._run(lambda sync: sync.bound_quote(nk_public_pem, nonce, mask, hash_alg))

    async def activate_credential(self, blob: bytes) -> bytes:
        return await self._run(lambda sync: sync.activate_credential(blob))

    async def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]:
        return await self._run(lambda sync: sync.certify_ak(qualifying_data))

    async def aclose(self) -> None:
        """Flush transient keys and close the context; later calls raise ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        # Shielded: aclose usually runs in a finally after a cancellation, and skipping it
        # would leave the AK and EK loaded in the TPM's few transient slots.
        with trio.CancelScope(shield=True):
            async with self._lock:
                sync, self._sync = self._sync, None
                if sync is not None:
                    await trio.to_thread.run_sync(sync.close, limiter=self._limiter)


def _close_quietly(sync: EsysTpm) -> None:
    """Close a context whose transport may be gone; its flushes are expected to fail."""
    try:
        sync.close()
    except Exception as exc:  # noqa: BLE001 -- the context is being discarded either way
        log.debug("closing the failed TPM context: %s", exc)


async def open_tpm(config: TpmConfig) -> PytssTpm:
    """The production TPM for ``config`` (the one place the agent picks a backend)."""
    return await PytssTpm.open(config)
