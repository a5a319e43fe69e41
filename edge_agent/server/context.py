"""What the handlers share: the agent's identity, TPM, NK, logs, keys and the two hooks.

The two hooks are where the payload and revocation modules plug in (app.py wires them):

* ``deploy_payload(derived)`` runs once K is derived: decrypt the payload with K, prepare the
  secure directory, extract and run it (edge_agent.payload).
* ``on_revocation(body)`` gets a revocation notification's raw JSON body and verifies its
  signature with the payload's RevocationNotifier certificate in the request (raising
  BadRequest when it does not hold); it returns the actions to run, or None.

The payload hook and the revocation actions run in the server's background nursery, never in
the request: a payload script may take long, and the tenant's POST should not wait for it
(rust-keylime hands both to workers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Optional

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.api_version import ApiVersion
from edge_agent.bootstrap_keys import BootstrapKeys, DerivedKey
from edge_agent.ima import ImaLogReader, MeasuredBootLogReader
from edge_agent.tpm import Tpm

__all__ = [
    "AgentApiContext",
    "Deferred",
    "PayloadDeployer",
    "RevocationHandler",
    "no_payload_deployer",
    "no_revocation_handler",
]

log = logging.getLogger(__name__)

PayloadDeployer = Callable[[DerivedKey], Awaitable[None]]
Deferred = Callable[[], Awaitable[None]]
RevocationHandler = Callable[[bytes], Awaitable[Optional[Deferred]]]


async def no_payload_deployer(derived: DerivedKey) -> None:
    """The hook when no payload module is wired: K is kept (for /keys/verify), no payload."""
    if derived.payload is not None:
        log.warning("A payload arrived with the bootstrap key but payload deployment is not wired")


async def no_revocation_handler(body: bytes) -> Optional[Deferred]:
    log.warning("Revocation notification received but revocation handling is not wired; ignored")
    return None


@dataclass
class AgentApiContext:
    """Everything a handler may use.  ``enc_alg`` is the key type ("rsa"/"ecc")."""

    agent_id: str
    tpm: Tpm
    nk: rsa.RSAPrivateKey
    nk_public_pem: bytes
    hash_alg: str
    enc_alg: str
    sign_alg: str
    versions: tuple[ApiVersion, ...]
    keys: BootstrapKeys
    ima: Optional[ImaLogReader] = None
    boot_log: Optional[MeasuredBootLogReader] = None
    deploy_payload: PayloadDeployer = no_payload_deployer
    on_revocation: RevocationHandler = no_revocation_handler
    # Where the hooks run; set by serve_agent_api before the first request.
    background: Optional[trio.Nursery] = None

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self.background is None:
            raise RuntimeError("the agent API's background nursery is not running")
        self.background.start_soon(_guarded, fn, *args)


async def _guarded(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a hook; its failure is logged, and never stops the server or attestation.

    A broken payload or revocation action must not take the agent offline (the verifier
    would see that as a failed attestation); Cancelled is a BaseException and passes.
    """
    try:
        await fn(*args)
    except Exception:  # any hook failure is logged and contained, see above
        log.exception("Agent API hook %s failed", getattr(fn, "__name__", fn))
