"""Attestation failures as Keylime records them: event ids, severity, recoverability.

An event id is ``<component>[.<sub>...].<event>`` (keylime/failure.py ``Event``), e.g.
``qoute_validation.quote_validation`` - Keylime's component value really is spelled "qoute"
and tools that match on event ids expect it - or ``pcr_validation.invalid_pcr_16``.  Keylime's
default severity policy gives every event the highest of its default labels ("emergency",
level 6); the agent record keeps the level and the id of the most severe event.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Union

# keylime/failure.py _eval_severity_config: default labels, lowest to highest.
SEVERITY_LABELS = ("info", "notice", "warning", "error", "critical", "alert", "emergency")
DEFAULT_SEVERITY_LABEL = SEVERITY_LABELS[-1]
DEFAULT_SEVERITY_LEVEL = SEVERITY_LABELS.index(DEFAULT_SEVERITY_LABEL)


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
