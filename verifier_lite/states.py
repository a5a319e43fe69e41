"""Operational states 0-10, numbered as Keylime numbers them, and the one transition table.

Numbers and names are keylime/common/states.py (7.14.3); tenants print and compare them.
Every change of an agent's state goes through :func:`next_state`, which reads
:data:`TRANSITIONS` - the table is the state machine (as h11's ``_state.py``), drawn in
docs/verifier.md, and each row has its own test.  A pair that is not in the table is an
:class:`IllegalTransition`: a bug, never a silent no-op.

REGISTERED and SAVED exist for numbering only: a pull-mode verifier never enters them, but a
database written by Keylime may hold them and ``reactivate`` leaves them.
"""

from __future__ import annotations

import enum


class State(enum.IntEnum):
    REGISTERED = 0
    START = 1
    SAVED = 2
    GET_QUOTE = 3
    GET_QUOTE_RETRY = 4
    PROVIDE_V = 5
    PROVIDE_V_RETRY = 6
    FAILED = 7
    TERMINATED = 8
    INVALID_QUOTE = 9
    TENANT_FAILED = 10


class Event(enum.Enum):
    QUOTE_OK = "quote_ok"  # a quote verified and V is not (or no longer) due
    QUOTE_OK_V_DUE = "quote_ok_v_due"  # the first quote verified and V must be delivered
    V_DELIVERED = "v_delivered"
    CONTACT_FAILED = "contact_failed"  # timeout, refused, 5xx: retry after retry_interval
    RETRIES_EXHAUSTED = "retries_exhausted"  # max_retries contact failures in a row
    QUOTE_INVALID = "quote_invalid"  # the evidence does not hold
    # The evidence does not hold, but every event is recoverable and below the highest
    # severity label: Keylime records it and keeps polling (verifier_lite/failures.py).
    QUOTE_INVALID_RECOVERABLE = "quote_invalid_recoverable"
    TASK_CRASHED = "task_crashed"  # the polling task raised (CVE-2022-3500 containment)
    STOP = "stop"  # PUT /agents/{id}/stop
    DELETE = "delete"  # DELETE while a poll is in flight
    REACTIVATE = "reactivate"  # PUT /agents/{id}/reactivate


# Keylime's display names (states.STATE_REPRESENTATIONS).
NAMES = {
    State.REGISTERED: "Registered",
    State.START: "Start",
    State.SAVED: "Saved",
    State.GET_QUOTE: "Get Quote",
    State.GET_QUOTE_RETRY: "Get Quote (retry)",
    State.PROVIDE_V: "Provide V",
    State.PROVIDE_V_RETRY: "Provide V (retry)",
    State.FAILED: "Failed",
    State.TERMINATED: "Terminated",
    State.INVALID_QUOTE: "Invalid Quote",
    State.TENANT_FAILED: "Tenant Quote Failed",
}

# States in which the polling engine runs a task for the agent.
POLLING = frozenset(
    {State.START, State.GET_QUOTE, State.GET_QUOTE_RETRY, State.PROVIDE_V, State.PROVIDE_V_RETRY}
)
# States that end polling; reactivate starts again.
STOPPED = frozenset(
    {State.FAILED, State.INVALID_QUOTE, State.TENANT_FAILED, State.REGISTERED, State.SAVED}
)
# Keylime's process_get_status: which operational states read as PASS or FAIL.
PASS_STATES = frozenset(
    {State.GET_QUOTE, State.GET_QUOTE_RETRY, State.PROVIDE_V, State.PROVIDE_V_RETRY}
)
FAIL_STATES = frozenset({State.FAILED, State.INVALID_QUOTE, State.TENANT_FAILED})


def _rows() -> dict[tuple[State, Event], State]:
    table: dict[tuple[State, Event], State] = {
        (State.START, Event.QUOTE_OK): State.GET_QUOTE,
        (State.START, Event.QUOTE_OK_V_DUE): State.PROVIDE_V,
        (State.START, Event.CONTACT_FAILED): State.GET_QUOTE_RETRY,
        (State.GET_QUOTE, Event.QUOTE_OK): State.GET_QUOTE,
        (State.GET_QUOTE, Event.CONTACT_FAILED): State.GET_QUOTE_RETRY,
        (State.GET_QUOTE_RETRY, Event.QUOTE_OK): State.GET_QUOTE,
        (State.GET_QUOTE_RETRY, Event.QUOTE_OK_V_DUE): State.PROVIDE_V,
        (State.GET_QUOTE_RETRY, Event.CONTACT_FAILED): State.GET_QUOTE_RETRY,
        (State.PROVIDE_V, Event.V_DELIVERED): State.GET_QUOTE,
        (State.PROVIDE_V, Event.CONTACT_FAILED): State.PROVIDE_V_RETRY,
        (State.PROVIDE_V_RETRY, Event.V_DELIVERED): State.GET_QUOTE,
        (State.PROVIDE_V_RETRY, Event.CONTACT_FAILED): State.PROVIDE_V_RETRY,
    }
    for state in POLLING:
        table[(state, Event.QUOTE_INVALID)] = State.INVALID_QUOTE
        table[(state, Event.TASK_CRASHED)] = State.FAILED
    for state in (State.GET_QUOTE_RETRY, State.PROVIDE_V_RETRY):
        table[(state, Event.RETRIES_EXHAUSTED)] = State.FAILED
    for state in State:
        if state is not State.TERMINATED:
            table[(state, Event.DELETE)] = State.TERMINATED
            table[(state, Event.STOP)] = State.TENANT_FAILED
    for state in POLLING | STOPPED:
        table[(state, Event.REACTIVATE)] = State.START
    _recoverable_rows(table)
    return table


def _recoverable_rows(table: dict[tuple[State, Event], State]) -> None:
    """Keylime polls on after a recoverable failure below the highest severity label
    (keylime/cloud_verifier_tornado.py ``process_agent``): the agent reads INVALID_QUOTE
    until a quote verifies, and that poll may fail, retry or crash like any other."""
    for state in POLLING | {State.INVALID_QUOTE}:
        table[(state, Event.QUOTE_INVALID_RECOVERABLE)] = State.INVALID_QUOTE
    table[(State.INVALID_QUOTE, Event.QUOTE_OK)] = State.GET_QUOTE
    table[(State.INVALID_QUOTE, Event.QUOTE_OK_V_DUE)] = State.PROVIDE_V
    table[(State.INVALID_QUOTE, Event.CONTACT_FAILED)] = State.GET_QUOTE_RETRY
    table[(State.INVALID_QUOTE, Event.QUOTE_INVALID)] = State.INVALID_QUOTE
    table[(State.INVALID_QUOTE, Event.TASK_CRASHED)] = State.FAILED


TRANSITIONS: dict[tuple[State, Event], State] = _rows()


class IllegalTransition(Exception):
    """``event`` cannot happen in ``state``: a verifier bug, logged with both."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"no transition from {state.name} on {event.value}")
        self.state = state
        self.event = event


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None
