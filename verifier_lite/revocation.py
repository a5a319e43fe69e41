"""Revocation notifications: tell the other agents (and a webhook) that an agent failed.

Keylime 7.14.3 (keylime/cloud_verifier_tornado.py ``notify_error``, cloud_verifier_common.py
``prepare_error``, revocation_notifier.py): when an agent's quote is invalid ("revocation"),
or an agent that had attested becomes unreachable ("comm_error"), the verifier builds::

    {"msg": json.dumps({"type", "ip", "agent_id", "port", "tpm_policy", "meta_data",
                        "event_time", "event_id", "severity_label", "context"}),
     "signature": base64(RSA-PSS-SHA256(revocation_key, msg)) or ""}

and POSTs it to ``/v{ver}/notifications/revocation`` of every other agent of this verifier
("agent" in ``enabled_revocation_notifications``) and to ``webhook_url`` ("webhook").
ZeroMQ is not implemented.  Sending happens in the background with a deadline; a failed
send is logged and never touches polling.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Optional, Protocol

import httpx
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from attest_protocol.api_version import ApiVersion
from attest_protocol.errors import AttestProtocolError
from verifier_lite.failures import FailureEvent
from verifier_lite.records import AgentRecord

log = logging.getLogger("limelet.verifier")

NOTIFIERS = frozenset({"agent", "webhook"})
# Keylime waits 60 s for all agent notifications of one event.
NOTIFY_DEADLINE_SECONDS = 60.0


def revocation_message(
    agent: AgentRecord, msgtype: str, failure: Optional[FailureEvent], now: Optional[str] = None
) -> dict[str, str]:
    """The signed body Keylime's ``prepare_error`` builds."""
    revocation: dict[str, Any] = {
        "type": msgtype,
        "ip": agent.ip,
        "agent_id": agent.agent_id,
        "port": agent.port,
        "tpm_policy": agent.tpm_policy,
        "meta_data": agent.meta_data,
        "event_time": now or time.asctime(),
    }
    if failure is not None:
        revocation["event_id"] = failure.event_id
        revocation["severity_label"] = failure.severity_label
        revocation["context"] = failure.context
    msg = json.dumps(revocation)
    return {"msg": msg, "signature": _sign(agent.revocation_key, msg.encode("utf-8"))}


def _sign(key_pem: str, data: bytes) -> str:
    if not key_pem:
        return ""  # Keylime sends an empty signature; agents refuse it
    key = serialization.load_pem_private_key(key_pem.encode("utf-8"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("revocation_key is not an RSA private key")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    return base64.b64encode(key.sign(data, pss, hashes.SHA256())).decode("ascii")


class RevocationSink(Protocol):
    async def send(self, agent: AgentRecord, version: ApiVersion, body: Mapping[str, str]) -> None:
        """Deliver ``body`` to ``agent``'s notifications endpoint."""
        ...

    async def webhook(self, body: Mapping[str, str]) -> None: ...


class Notifier:
    """Sends in the background of ``nursery``; ``enabled`` is a subset of NOTIFIERS."""

    def __init__(self, enabled: frozenset[str], sink: RevocationSink) -> None:
        self.enabled = enabled & NOTIFIERS
        self._sink = sink

    def notify(
        self,
        nursery: trio.Nursery,
        failed: AgentRecord,
        others: list[AgentRecord],
        msgtype: str,
        failure: Optional[FailureEvent],
    ) -> None:
        if not self.enabled:
            return
        try:
            body = revocation_message(failed, msgtype, failure)
        except ValueError as exc:
            log.error("agent %s: no revocation sent: %s", failed.agent_id, exc)
            return
        if "webhook" in self.enabled:
            nursery.start_soon(self._webhook, body)
        if "agent" in self.enabled:
            for other in others:
                # Push agents (verifier_lite/push/enrol.py) have no address to deliver to.
                if other.agent_id != failed.agent_id and other.ip:
                    nursery.start_soon(self._send, other, body)

    async def _webhook(self, body: Mapping[str, str]) -> None:
        try:
            with trio.fail_after(NOTIFY_DEADLINE_SECONDS):
                await self._sink.webhook(body)
        except (trio.TooSlowError, AttestProtocolError, httpx.HTTPError, OSError) as exc:
            log.warning("revocation webhook failed: %s", type(exc).__name__)
        except Exception:
            # Best effort in the engine's nursery: a bug here must not stop polling.
            log.exception("revocation webhook failed")

    async def _send(self, agent: AgentRecord, body: Mapping[str, str]) -> None:
        try:
            with trio.fail_after(NOTIFY_DEADLINE_SECONDS):
                version = ApiVersion.parse(agent.supported_version)
                await self._sink.send(agent, version, body)
        except (trio.TooSlowError, AttestProtocolError, httpx.HTTPError, OSError) as exc:
            log.warning("revocation to agent %s failed: %s", agent.agent_id, exc)
        except Exception:
            # Best effort in the engine's nursery: a bug here must not stop polling.
            log.exception("revocation to agent %s failed", agent.agent_id)
