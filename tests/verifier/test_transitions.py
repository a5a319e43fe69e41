"""``AgentStates.apply``: the one place a state changes (table, store, log, notification)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import trio

from attest_protocol.api_version import ApiVersion
from tests.verifier.test_store import record
from verifier_lite.failures import Component, event
from verifier_lite.poller import AgentGone
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.revocation import Notifier
from verifier_lite.states import Event, IllegalTransition, State
from verifier_lite.store import SqliteVerifierStore
from verifier_lite.transitions import AgentStates


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteVerifierStore]:
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    await store.add_agent(
        record(), RuntimePolicyRecord("a1", "{}", None, True), MbPolicyRecord("a1", None)
    )
    try:
        yield store
    finally:
        await store.aclose()


async def test_apply_writes_logs_and_returns_the_stored_row(
    store: SqliteVerifierStore, caplog: pytest.LogCaptureFixture
) -> None:
    states = AgentStates(store)
    failure = event(Component.PCR_VALIDATION, "invalid_pcr_16", "bound to another key", False)
    with caplog.at_level(logging.INFO, logger="limelet.verifier"):
        after = await states.apply(record(), Event.QUOTE_INVALID, failure=failure)
    assert after.state is State.INVALID_QUOTE
    assert after.last_event_id == "pcr_validation.invalid_pcr_16"
    assert await store.get_agent("a1") == after
    assert "a1: START -> INVALID_QUOTE on quote_invalid" in caplog.text


async def test_a_pair_outside_the_table_writes_nothing(store: SqliteVerifierStore) -> None:
    states = AgentStates(store)
    with pytest.raises(IllegalTransition):
        await states.apply(record(), Event.V_DELIVERED)  # START has no V to deliver
    stored = await store.get_agent("a1")
    assert stored is not None and stored.state is State.START


async def test_a_vanished_agent_is_gone(store: SqliteVerifierStore) -> None:
    await store.delete_agent("a1")
    with pytest.raises(AgentGone):
        await AgentStates(store).apply(record(), Event.STOP)


class RecordingSink:
    """A RevocationSink that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.webhooks: list[Mapping[str, str]] = []

    async def send(self, agent: AgentRecord, version: ApiVersion, body: Mapping[str, str]) -> None:
        raise AssertionError("only the webhook is enabled")

    async def webhook(self, body: Mapping[str, str]) -> None:
        self.webhooks.append(body)


async def test_an_invalid_quote_notifies_and_a_stop_does_not(store: SqliteVerifierStore) -> None:
    sink = RecordingSink()
    states = AgentStates(store, Notifier(frozenset({"webhook"}), sink))
    async with trio.open_nursery() as nursery:
        states.nursery = nursery
        await states.apply(record(), Event.STOP)
    assert sink.webhooks == []
    await store.update_agent("a1", operational_state=int(State.GET_QUOTE))
    failure = event(Component.PCR_VALIDATION, "invalid_pcr_16", "bound to another key", False)
    async with trio.open_nursery() as nursery:
        states.nursery = nursery
        await states.apply(
            record(operational_state=int(State.GET_QUOTE)), Event.QUOTE_INVALID, failure=failure
        )
    assert len(sink.webhooks) == 1
    assert "invalid_pcr_16" in sink.webhooks[0]["msg"]
