"""Each agent's timeline: its state changes and failures, kept in the store, bounded per agent.

``AgentStates.apply`` (transitions.py) records one :class:`TimelineEvent` whenever the
operational state changes or a failure is recorded; a quote that passes in GET_QUOTE changes
nothing and is not an event (it is counted in ``attestation_count``).  The store keeps the
newest :data:`TIMELINE_EVENTS_PER_AGENT` per agent, so a flapping agent cannot fill the disk.

Keylime keeps no such history (its verifier stores only the last event id and severity,
keylime/db/verifier_db.py); the status page (status_page.py) reads it.  Also here, pure:
:func:`plain_reason` and :func:`evidence`, the words and facts an operator reads for an
event id (keylime/failure.py ids as verifier_lite/checks.py and measured_boot.py raise them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from verifier_lite.failures import FailureEvent
from verifier_lite.states import Event, State

# Enough to see the last days of a flapping agent; one row is a few hundred bytes.
TIMELINE_EVENTS_PER_AGENT = 100
# The context a failure carries is our own JSON, bounded where it is built (checks.py cuts
# paths and details to 256 characters); this bounds what the page shows of any one event.
CONTEXT_MAX_CHARS = 2000

_PCR_EVENT = re.compile(
    r"^(pcr_validation|measured_boot)\.(invalid|policy|missing|unused)_pcr_(\d+)$"
)
_STATE_WORDS = {
    Event.QUOTE_OK: "quote verified",
    Event.QUOTE_OK_V_DUE: "first quote verified; V to deliver",
    Event.V_DELIVERED: "V delivered",
    Event.CONTACT_FAILED: "agent did not answer; retrying",
    Event.RETRIES_EXHAUSTED: "agent unreachable; retries used up",
    Event.QUOTE_INVALID: "attestation failed",
    Event.TASK_CRASHED: "polling task failed",
    Event.STOP: "stopped by the tenant",
    Event.DELETE: "deleted",
    Event.REACTIVATE: "(re)started polling",
}
_EVENT_WORDS = {
    "qoute_validation.quote_validation": "the quote did not verify (signature, nonce or clock)",
    "qoute_validation.invalid_data": "the agent's quote answer could not be read",
    "qoute_validation.no_pubkey": "the agent sent no public key",
    "qoute_validation.invalid_pubkey": "the agent's public key is unusable",
    "qoute_validation.invalid_ima_entry_nb": "the agent sent the wrong IMA log position",
    "pcr_validation.missing_pcrs": "PCRs the policy names are missing from the quote",
    "measured_boot.invalid_boot_log": "the boot event log does not parse or replay",
    "measured_boot.reject_all": "the measured-boot policy rejects every boot",
    "ima.parser.entry": "an IMA log line does not parse",
    "internal.unreachable": "the agent could not be reached",
    "internal.polling_task": "the verifier's polling task failed",
    "internal.api_version": "no API version in common with the agent",
}
_PCR_WORDS = {
    ("pcr_validation", "invalid"): "PCR {n} holds a value the policy does not allow",
    ("pcr_validation", "missing"): "PCR {n} is missing from the quote",
    ("pcr_validation", "unused"): "PCR {n} is in the policy but its log was not sent",
    ("measured_boot", "invalid"): "the boot event log does not replay to PCR {n}",
    ("measured_boot", "policy"): "boot PCR {n} is not in the measured-boot policy",
}


@dataclass(frozen=True)
class TimelineEvent:
    agent_id: str
    at: float  # seconds since the epoch
    from_state: int
    to_state: int
    event: str  # states.Event value
    event_id: Optional[str] = None  # Keylime's failure event id
    context: Optional[str] = None  # the failure's JSON context (failures.FailureEvent)

    @property
    def is_failure(self) -> bool:
        return self.event_id is not None


def timeline_event(
    agent_id: str, at: float, old: State, new: State, ev: Event, failure: Optional[FailureEvent]
) -> TimelineEvent:
    return TimelineEvent(
        agent_id,
        at,
        int(old),
        int(new),
        ev.value,
        None if failure is None else failure.event_id,
        None if failure is None else failure.context[:CONTEXT_MAX_CHARS],
    )


def event_words(event: str) -> str:
    """What a transition event means, in words (the event value itself when unknown)."""
    try:
        return _STATE_WORDS[Event(event)]
    except ValueError:
        return event


def plain_reason(event_id: Optional[str]) -> str:
    """An event id in plain words: ``pcr_validation.invalid_pcr_23`` -> "PCR 23 holds ..."."""
    if not event_id:
        return ""
    if event_id in _EVENT_WORDS:
        return _EVENT_WORDS[event_id]
    match = _PCR_EVENT.match(event_id)
    if match and (match[1], match[2]) in _PCR_WORDS:
        return _PCR_WORDS[(match[1], match[2])].format(n=match[3])
    if event_id.startswith("ima."):
        return "a measured file does not match the runtime policy"
    return event_id


def evidence(event_id: Optional[str], context: Optional[str]) -> list[tuple[str, str]]:
    """The facts behind a failure as (label, value) rows: the PCR and its expected and got
    values, or the IMA entry and its path; the context's message otherwise."""
    body = _context(context)
    rows: list[tuple[str, str]] = []
    match = _PCR_EVENT.match(event_id or "")
    if match:
        rows.append(("PCR", match[3]))
    for key, label in (
        ("expected", "expected"),
        ("got", "got"),
        ("entry", "IMA entry"),
        ("path", "path"),
        ("template", "template"),
        ("detail", "detail"),
        ("message", "message"),
        ("context", "message"),
        ("data", "data"),
        ("error", "error"),
    ):
        if key in body and body[key] not in ("", None, []):
            rows.append((label, _text(body[key])))
    return rows


def _context(context: Optional[str]) -> dict[str, Any]:
    if not context:
        return {}
    try:
        body = json.loads(context)
    except ValueError:
        return {"message": context}
    return body if isinstance(body, dict) else {"message": _text(body)}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)[:CONTEXT_MAX_CHARS]
