"""The operational state table: Keylime's numbers, and one test per transition."""

from __future__ import annotations

import pytest

from verifier_lite.states import (
    NAMES,
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    next_state,
)

# keylime/common/states.py (7.14.3)
KEYLIME_NUMBERS = {
    "REGISTERED": 0, "START": 1, "SAVED": 2, "GET_QUOTE": 3, "GET_QUOTE_RETRY": 4,
    "PROVIDE_V": 5, "PROVIDE_V_RETRY": 6, "FAILED": 7, "TERMINATED": 8, "INVALID_QUOTE": 9,
    "TENANT_FAILED": 10,
}  # fmt: skip


def test_numbers_are_keylimes() -> None:
    assert {s.name: int(s) for s in State} == KEYLIME_NUMBERS
    assert set(NAMES) == set(State)


_ROWS = sorted(
    ((s, e, t) for (s, e), t in TRANSITIONS.items()), key=lambda row: (row[0], row[1].value)
)


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [pytest.param(s, e, t, id=f"{s.name}-{e.value}") for s, e, t in _ROWS],
)
def test_transition(state: State, event: Event, target: State) -> None:
    assert next_state(state, event) is target


def test_core_path_is_in_the_table() -> None:
    path = [
        (State.START, Event.QUOTE_OK_V_DUE, State.PROVIDE_V),
        (State.PROVIDE_V, Event.V_DELIVERED, State.GET_QUOTE),
        (State.GET_QUOTE, Event.CONTACT_FAILED, State.GET_QUOTE_RETRY),
        (State.GET_QUOTE_RETRY, Event.RETRIES_EXHAUSTED, State.FAILED),
        (State.FAILED, Event.REACTIVATE, State.START),
        (State.GET_QUOTE, Event.QUOTE_INVALID, State.INVALID_QUOTE),
        (State.GET_QUOTE, Event.STOP, State.TENANT_FAILED),
    ]
    for state, event, target in path:
        assert next_state(state, event) is target


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.GET_QUOTE, Event.V_DELIVERED),
        (State.FAILED, Event.QUOTE_OK),
        (State.TERMINATED, Event.REACTIVATE),
        (State.GET_QUOTE, Event.RETRIES_EXHAUSTED),
        (State.INVALID_QUOTE, Event.V_DELIVERED),
        (State.FAILED, Event.QUOTE_INVALID_RECOVERABLE),
    ],
)
def test_pairs_outside_the_table_are_illegal(state: State, event: Event) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event)
    assert (info.value.state, info.value.event) == (state, event)
