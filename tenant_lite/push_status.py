"""How ``status`` shows a push agent: the verifier's v2 record, no agent contact.

A push agent has no ``operational_state`` that means anything (Keylime's tenant drops it with
``--push-model``, keylime/tenant.py ``do_cvstatus``); the verifier's ``attestation_status``
(PASS, FAIL, TIMEOUT or PENDING), ``attestation_count`` and the times of the last quote and
the last successful attestation say how it is doing.
"""

from __future__ import annotations

from typing import Any

# Fields of the verifier's v2 record that say how a push agent is doing
# (keylime/cloud_verifier_common.py ``process_get_status``).
PUSH_STATUS_FIELDS = (
    "attestation_status",
    "attestation_count",
    "last_received_quote",
    "last_successful_attestation",
    "attestation_period",
    "maximum_attestation_interval",
)


def is_push_record(record: dict[str, Any]) -> bool:
    """A verifier record with no agent address is a push agent (``is_push_mode_agent``)."""
    return record.get("ip") is None and record.get("port") is None


def push_status(record: dict[str, Any]) -> dict[str, Any]:
    """The verifier's record without the pull-only ``operational_state``, status fields first."""
    shown = {k: record.get(k) for k in PUSH_STATUS_FIELDS}
    rest = {k: v for k, v in record.items() if k not in shown and k != "operational_state"}
    return {"push_model": True, **shown, **rest}
