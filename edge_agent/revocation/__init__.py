"""Revocation notifications on the agent: verify Keylime's signed message, run the actions.

The server's ``POST /v{v}/notifications/revocation`` handler (rust-keylime
keylime-agent/src/notifications_handler.rs) makes one call, with ``secure`` the secure
directory::

    options = RevocationOptions(
        revocation_cert=cfg.revocation_cert,
        revocation_actions=cfg.revocation_actions,
        revocation_actions_dir=Path(cfg.revocation_actions_dir),
        allow_payload_revocation_actions=cfg.allow_payload_revocation_actions)
    try:
        message, results = await handle_notification(body, secure, options)
    except NoRevocationCertError:
        ...  # log, ignore (rust-keylime: "Revocation certificate not yet available")
    except RevocationError:
        ...  # log, refuse (400); no action has run

The pieces are public too: ``load_revocation_cert`` (blocking), ``verify_notification``
(pure), ``configured_actions`` (blocking) and ``run_actions`` (async).
Actions can take a while: a handler that wants to answer at once verifies with the pieces
and runs ``run_actions`` in a nursery task.  Modules: ``verify`` (pure), ``cert`` (where the
certificate is), ``actions``, ``handler`` (the composition).  Errors::

    RevocationError
    ├── RevocationFormatError
    ├── NoRevocationCertError
    ├── RevocationCertError
    └── RevocationSignatureError

``run_actions`` raises none of these: each action's outcome is an ``ActionResult``.
"""

from __future__ import annotations

from edge_agent.revocation.actions import (
    ACTION_TIMEOUT_SECONDS,
    ActionResult,
    configured_actions,
    parse_action_list,
    run_actions,
)
from edge_agent.revocation.cert import (
    load_revocation_cert,
    parse_revocation_cert,
    revocation_cert_path,
)
from edge_agent.revocation.errors import (
    NoRevocationCertError,
    RevocationCertError,
    RevocationError,
    RevocationFormatError,
    RevocationSignatureError,
)
from edge_agent.revocation.handler import RevocationOptions, handle_notification
from edge_agent.revocation.verify import RevocationMessage, verify_notification

__all__ = [
    "ACTION_TIMEOUT_SECONDS",
    "ActionResult",
    "NoRevocationCertError",
    "RevocationCertError",
    "RevocationError",
    "RevocationFormatError",
    "RevocationMessage",
    "RevocationOptions",
    "RevocationSignatureError",
    "configured_actions",
    "handle_notification",
    "load_revocation_cert",
    "parse_action_list",
    "parse_revocation_cert",
    "revocation_cert_path",
    "run_actions",
    "verify_notification",
]
