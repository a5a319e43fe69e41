"""One call for the server's revocation endpoint: load the certificate, verify, run actions.

The order is the guarantee: nothing runs unless the notification verified.  The certificate
is read again for each notification (it is small), so a payload delivered since the last one
is picked up without a separate "payload decrypted" message (rust-keylime's revocation
worker reloads it on PayloadDecrypted instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from edge_agent.payload.archive import UNZIPPED_DIR_NAME
from edge_agent.revocation.actions import (
    ACTION_TIMEOUT_SECONDS,
    ActionResult,
    configured_actions,
    run_actions,
)
from edge_agent.revocation.cert import load_revocation_cert
from edge_agent.revocation.verify import RevocationMessage, verify_notification

__all__ = ["RevocationOptions", "handle_notification"]


@dataclass(frozen=True)
class RevocationOptions:
    """The agent.conf options the handler needs (AgentConfig fields of the same names)."""

    revocation_cert: str
    revocation_actions: str
    revocation_actions_dir: Path
    allow_payload_revocation_actions: bool
    action_timeout_s: float = ACTION_TIMEOUT_SECONDS


async def handle_notification(
    body: bytes, secure_dir: Path, options: RevocationOptions
) -> tuple[RevocationMessage, list[ActionResult]]:
    """Verify ``body`` and run the configured actions; the message and each outcome.

    Raises NoRevocationCertError (log and ignore), or another RevocationError (refuse), in
    both cases before any action has run.
    """
    cert = await trio.to_thread.run_sync(load_revocation_cert, secure_dir, options.revocation_cert)
    message = verify_notification(body, cert)
    unzipped = secure_dir / UNZIPPED_DIR_NAME
    names = await trio.to_thread.run_sync(configured_actions, options.revocation_actions, unzipped)
    results = await run_actions(
        names,
        message,
        options.revocation_actions_dir,
        unzipped,
        options.allow_payload_revocation_actions,
        timeout_s=options.action_timeout_s,
    )
    return message, results
