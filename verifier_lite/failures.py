"""Attestation failures as Keylime records them: event ids, severity, recoverability.

An event id is ``<component>[.<sub>...].<event>`` (keylime/failure.py ``Event``), e.g.
``qoute_validation.quote_validation`` - Keylime's component value really is spelled "qoute"
and tools that match on event ids expect it - or ``pcr_validation.invalid_pcr_16``.

Severity follows the verifier's ``severity_labels`` (lowest to highest; a label's level is
its index) and ``severity_policy`` (rules ``{"event_id": regex, "severity_label": label}``;
the first rule whose regex matches the whole id wins).  As in keylime/failure.py: an id no
rule matches, or a rule naming an unknown label, gets the highest label; an irrecoverable
event always gets the highest label.  Keylime's defaults give every event "emergency".
The events are made with the default labels and :meth:`SeverityPolicy.classify` relabels
them under the configured policy; the agent record keeps the level and the id of the most
severe event, and polling stops only when that is the highest label or an event is
irrecoverable (keylime/cloud_verifier_tornado.py ``process_agent``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Union

# keylime/failure.py _eval_severity_config: default labels, lowest to highest.
SEVERITY_LABELS = ("info", "notice", "warning", "error", "critical", "alert", "emergency")
DEFAULT_SEVERITY_LABEL = SEVERITY_LABELS[-1]
DEFAULT_SEVERITY_LEVEL = SEVERITY_LABELS.index(DEFAULT_SEVERITY_LABEL)
# Bounds keep a hostile or mistaken configuration small.
MAX_LABELS = 64
MAX_RULES = 256


class Component(enum.Enum):
    QUOTE_VALIDATION = "qoute_validation"
    PCR_VALIDATION = "pcr_validation"
    MEASURED_BOOT = "measured_boot"
    IMA = "ima"
    INTERNAL = "internal"


@dataclass(frozen=True)
class FailureEvent:
    event_id: str
    context: str  # JSON, as Keylime's Event.context
    recoverable: bool
    severity_label: str = DEFAULT_SEVERITY_LABEL
    severity_level: int = DEFAULT_SEVERITY_LEVEL


def event(
    component: Component, name: str, context: Union[str, dict[str, Any]], recoverable: bool
) -> FailureEvent:
    body = {"message": context} if isinstance(context, str) else context
    return FailureEvent(f"{component.value}.{name}", json.dumps(body), recoverable)


def most_severe(events: tuple[FailureEvent, ...]) -> FailureEvent:
    """The first event of the highest severity (Keylime's ``highest_severity_event``)."""
    return max(events, key=lambda e: e.severity_level)  # max keeps the first on ties


class SeverityConfigError(ValueError):
    """``severity_labels`` or ``severity_policy`` cannot be used; ``option`` names which."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


@dataclass(frozen=True)
class SeverityPolicy:
    labels: tuple[str, ...] = SEVERITY_LABELS
    rules: tuple[tuple[re.Pattern[str], str], ...] = ((re.compile(".*"), SEVERITY_LABELS[-1]),)

    @property
    def max_level(self) -> int:
        return len(self.labels) - 1

    def label(self, event_id: str) -> str:
        for regex, label in self.rules:
            if regex.fullmatch(event_id):
                return label if label in self.labels else self.labels[-1]
        return self.labels[-1]

    def relabel(self, failure: FailureEvent) -> FailureEvent:
        label = self.label(failure.event_id) if failure.recoverable else self.labels[-1]
        level = self.labels.index(label)
        return dataclasses.replace(failure, severity_label=label, severity_level=level)

    def classify(self, failures: tuple[FailureEvent, ...]) -> tuple[FailureEvent, ...]:
        return tuple(self.relabel(f) for f in failures)

    def stops_polling(self, failures: tuple[FailureEvent, ...]) -> bool:
        """Keylime stops when an event is irrecoverable or reaches the highest label."""
        return any(not f.recoverable or f.severity_level == self.max_level for f in failures)


def _json_list(text: str, option: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise SeverityConfigError(option, "must be a JSON list") from None
    if not isinstance(value, list):
        raise SeverityConfigError(option, "must be a JSON list")
    return value


def _labels(text: str) -> tuple[str, ...]:
    value = _json_list(text, "severity_labels")
    if not value:
        return SEVERITY_LABELS  # keylime/failure.py: empty means the defaults
    if len(value) > MAX_LABELS or not all(isinstance(v, str) and v for v in value):
        raise SeverityConfigError("severity_labels", f"must hold 1-{MAX_LABELS} label names")
    if len(set(value)) != len(value):
        raise SeverityConfigError("severity_labels", "labels must be distinct")
    return tuple(value)


def _rule(item: Any) -> tuple[re.Pattern[str], str]:
    if not isinstance(item, dict) or not all(
        isinstance(item.get(k), str) for k in ("event_id", "severity_label")
    ):
        raise SeverityConfigError(
            "severity_policy", 'each rule must be {"event_id": regex, "severity_label": label}'
        )
    try:
        return re.compile(item["event_id"]), item["severity_label"]
    except re.error as exc:
        raise SeverityConfigError("severity_policy", f"bad regex: {exc}") from None


def load_severity_policy(labels_text: str, policy_text: str) -> SeverityPolicy:
    """The policy from Keylime's two options (JSON text, as in verifier.conf)."""
    labels = _labels(labels_text)
    items = _json_list(policy_text, "severity_policy")
    if len(items) > MAX_RULES:
        raise SeverityConfigError("severity_policy", f"at most {MAX_RULES} rules")
    rules = tuple(_rule(i) for i in items) or ((re.compile(".*"), labels[-1]),)
    return SeverityPolicy(labels, rules)
