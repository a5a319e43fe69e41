"""The push agent's cycle: session, capabilities, evidence, then wait as the verifier says.

One attestation is one ``POST`` (capabilities; 201 with ``Location`` and the evidence
requested) and one ``PATCH`` to that Location (evidence; 202 with
``meta.seconds_to_next_attestation``), as in rust-keylime
keylime-push-model-agent/src/state_machine.rs and attestation.rs.  What the answers mean:

* 401 or 403 on either step: the token is dropped and a new session opened, once per cycle
  (rust-keylime's AuthenticationMiddleware clears the token on both; Keylime answers 401 for
  an expired token and 403 for a token of another agent).
* ``Retry-After`` (429 ``premature_attestation``, 503 ``verification_in_progress``, a rate
  limited session): wait exactly that, at most transport.MAX_RETRY_AFTER_S.
* no answer at all (connect, TLS, timeout): bounded exponential backoff, the
  ``exponential_backoff_*`` options (edge_agent.backoff), reset by the next good answer.
* any other failure: wait ``attestation_interval_seconds`` and start again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

import trio

from edge_agent.push.collect import Collector
from edge_agent.push.errors import (
    BadVerifierResponse,
    EvidenceUnavailable,
    PushError,
    VerifierRefused,
    VerifierUnreachable,
)
from edge_agent.push.evidence import (
    capabilities_request,
    error_request,
    evidence_request,
    parse_requested,
)
from edge_agent.push.session import API, Certifier, Requester, authenticate
from edge_agent.push.transport import JSON_API, PushResponse, retry_after_seconds

__all__ = ["PushLoop", "PushSettings"]

log = logging.getLogger(__name__)
AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class PushSettings:
    agent_id: str
    interval_s: float
    # Waits after 1, 2, ... consecutive failures to reach the verifier (the last repeats).
    unreachable_backoff: tuple[float, ...]
    path_prefix: str = ""


class PushLoop:
    """Attests forever; ``cycle`` is one attestation, for tests."""

    def __init__(
        self, client: Requester, tpm: Certifier, collector: Collector, settings: PushSettings
    ) -> None:
        self._client, self._tpm, self._collector = client, tpm, collector
        self._settings = settings
        self._token: Optional[str] = None
        self._unreachable = 0
        self.sessions = 0
        self.attestations = 0
        base = re.escape(f"{settings.path_prefix}{API}/agents/{settings.agent_id}/attestations/")
        self._location = re.compile(base + r"(\d{1,12})")

    async def run(self) -> NoReturn:
        while True:  # noqa: ASYNC110 -- the wait is the verifier's schedule, not a poll
            await trio.sleep(await self.cycle())

    async def cycle(self) -> float:
        """One attestation; the seconds to wait before the next one."""
        interval = self._settings.interval_s
        try:
            wait = await self._attest()
        except VerifierUnreachable as exc:
            delay = self._backoff()
            log.warning("Verifier unreachable: %s; again in %.1f s", exc, delay)
            return delay
        except VerifierRefused as exc:
            self._unreachable = 0
            wait = interval if exc.retry_after is None else exc.retry_after
            log.warning("Attestation failed: %s; again in %.1f s", exc, wait)
            return wait
        except PushError as exc:
            self._unreachable = 0
            log.warning("Attestation failed: %s; again in %.1f s", exc, interval)
            return interval
        self._unreachable = 0
        return wait

    def _backoff(self) -> float:
        schedule = self._settings.unreachable_backoff
        self._unreachable += 1
        if not schedule:
            return self._settings.interval_s
        return schedule[min(self._unreachable, len(schedule)) - 1]

    async def _attest(self) -> float:
        for fresh in (False, True):
            if self._token is None:
                self._token = await authenticate(self._client, self._tpm, self._settings.agent_id)
                self.sessions += 1
            try:
                return await self._negotiate_and_send(self._token)
            except VerifierRefused as exc:
                if exc.status not in AUTH_STATUSES:
                    raise
                self._token = None
                if fresh:
                    raise
                log.info("The verifier refused the token (%d); opening a new session", exc.status)
        raise AssertionError("unreachable")

    async def _send(self, method: str, path: str, doc: Any, token: str) -> PushResponse:
        return await self._client.request(method, path, doc, token, JSON_API)

    async def _negotiate_and_send(self, token: str) -> float:
        offer = await self._collector.offer()
        path = f"{API}/agents/{self._settings.agent_id}/attestations"
        answer = await self._send("POST", path, capabilities_request(offer), token)
        _expect(answer, 201, "offering capabilities")
        evidence_path = self._evidence_path(answer.headers.get("location"))
        requested = parse_requested(answer.json())
        try:
            if not requested:
                raise EvidenceUnavailable(
                    "the verifier requested no evidence: is the agent enrolled with a policy?"
                )
            items = await self._collector.collect(requested)
        except EvidenceUnavailable:
            # Tell the verifier, as rust-keylime does; the cycle fails either way.
            failed = await self._send("PATCH", evidence_path, error_request(), token)
            if failed.status in AUTH_STATUSES:
                self._token = None
            raise
        answer = await self._send("PATCH", evidence_path, evidence_request(items), token)
        _expect(answer, 202, "sending evidence")
        self.attestations += 1
        return self._next_wait(answer)

    def _evidence_path(self, location: Optional[str]) -> str:
        """The Location of the new attestation; only this agent's attestation paths."""
        match = self._location.fullmatch(location or "")
        if match is None:
            raise BadVerifierResponse(f"the 201 Location {location!r} is not an attestation")
        return f"{API}/agents/{self._settings.agent_id}/attestations/{match.group(1)}"

    def _next_wait(self, answer: PushResponse) -> float:
        doc = answer.json()
        meta = doc.get("meta") if isinstance(doc, dict) else None
        seconds = meta.get("seconds_to_next_attestation") if isinstance(meta, dict) else None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
            return float(seconds)
        return self._settings.interval_s


def _expect(answer: PushResponse, status: int, what: str) -> None:
    if answer.status != status:
        retry = retry_after_seconds(answer.headers.get("retry-after"))
        detail = answer.body[:300].decode("latin-1")
        raise VerifierRefused(what, answer.status, retry, detail)
