"""One agent's polling loop: negotiate, full quote, V, then partial quotes (see engine.py).

:class:`AgentPoller` is run by :class:`~verifier_lite.engine.Engine` under its supervisor; it
changes the agent's state only through ``AgentStates.apply`` (transitions.py, states.py)
and keeps in memory what Keylime keeps in ``AgentAttestState``: the NK public key, the last
TPM clock, the IMA position, the boot time.  After a restart these are rebuilt from a full
quote, so nothing in memory has to survive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import trio

from attest_protocol.api_version import SUPPORTED_VERSIONS, ApiVersion, negotiate
from attest_protocol.errors import AttestProtocolError
from attest_protocol.mb import ACCEPT_ALL
from attest_protocol.policy import ImaState, RuntimePolicy, load_runtime_policy
from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.public import TpmPublic
from verifier_lite.agent_client import AgentChannel, QuoteRequest, encrypt_v
from verifier_lite.checks import (
    CheckInput,
    CheckResult,
    Evidence,
    check_evidence,
    parse_ak,
    parse_evidence,
)
from verifier_lite.errors import AgentContactError, AgentProtocolError
from verifier_lite.failures import Component, FailureEvent, SeverityPolicy, event, most_severe
from verifier_lite.ima_keys import with_agent_keys
from verifier_lite.lag_governor import DEFAULT_TARGET_LAG_SECONDS, LagGovernor
from verifier_lite.measured_boot import MbPolicy, load_mb_policy
from verifier_lite.metrics import VerifierMetrics, timed
from verifier_lite.records import AgentRecord
from verifier_lite.signed_policy import unwrap
from verifier_lite.states import POLLING, Event, State
from verifier_lite.store import VerifierStore
from verifier_lite.tpm_policy import parse_tpm_policy, quote_mask
from verifier_lite.write_batch import CounterBatch

log = logging.getLogger("limelet.verifier")

# Keylime's nonce: 20 characters from letters and digits (tpm_util.random_password(20)).
NONCE_LENGTH = 20
_NONCE_ALPHABET = string.ascii_letters + string.digits
# Exponential backoff doubles the wait; this caps it so a long outage is still noticed.
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class EngineSettings:
    quote_interval: float
    retry_interval: float
    exponential_backoff: bool
    max_retries: int
    # [verifier] measured_boot_policy_name (attest_protocol.mb.POLICY_NAMES).
    measured_boot_policy_name: str = ACCEPT_ALL
    severity: SeverityPolicy = field(default_factory=SeverityPolicy)
    # Throughput levers (bench/verifier_fleet.py measured them): the period good quotes'
    # counters are written in (write_batch.py; 0 writes each at once), and the most quote
    # requests and checks in flight at once (0: no cap).
    counter_flush_seconds: float = 1.0
    max_in_flight: int = 0
    # The loop lag above which fewer quote requests start (lag_governor.py; 0: off).
    in_flight_lag_seconds: float = DEFAULT_TARGET_LAG_SECONDS


def new_nonce() -> str:
    """NONCE_LENGTH characters of _NONCE_ALPHABET, each uniform (rejection sampling over
    secrets.token_bytes; a byte is kept only below the largest multiple of the alphabet's size)."""
    limit = 256 - 256 % len(_NONCE_ALPHABET)
    chars: list[str] = []
    while len(chars) < NONCE_LENGTH:
        chars.extend(
            _NONCE_ALPHABET[b % len(_NONCE_ALPHABET)] for b in secrets.token_bytes(32) if b < limit
        )
    return "".join(chars[:NONCE_LENGTH])


def retry_delay(settings: EngineSettings, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based)."""
    if not settings.exponential_backoff:
        return settings.retry_interval
    return float(min(MAX_BACKOFF_SECONDS, settings.retry_interval * 2 ** (attempt - 1)))


class AgentGone(Exception):
    """The agent's row vanished (deleted) while its task ran: the task just ends."""


@dataclass
class _Memory:
    """What one task keeps between quotes that the store does not; rebuilt from a full quote
    after a restart.  The NK public key and boot time are the agent record's."""

    version: ApiVersion
    runtime_policy: Optional[RuntimePolicy]
    mb_policy: Optional[MbPolicy] = None
    full_quote_due: bool = True  # Keylime asks for the NK key in the task's first quote
    clock: Optional[ClockInfo] = None
    ima_state: Optional[ImaState] = None
    contact_failures: int = 0
    # Set by a recoverable failure below the highest severity: the task polls on from
    # INVALID_QUOTE, as Keylime does (verifier_lite/failures.py).
    polls_on: bool = False
    # Parsed once per task, not per quote: the AK, the tpm_policy, and the policy generation
    # the policies above were loaded at (a policy update reloads them, see _fresh_policies).
    ak: Optional[TpmPublic] = None
    tpm_policy: Optional[Mapping[int, tuple[str, ...]]] = None
    policy_generation: int = 0


class Transition(Protocol):
    """The engine's state change: table lookup, store write, notifications."""

    async def __call__(
        self,
        agent: AgentRecord,
        ev: Event,
        *,
        failure: Optional[FailureEvent] = None,
        ima_entries: Optional[int] = None,
        **changes: Any,
    ) -> AgentRecord: ...


@dataclass
class PollerLevers:
    """What the engine shares among its polling tasks (engine.py): the counter batch, the
    in-flight cap, and the policy generation (bumped when a policy is updated)."""

    counters: Optional[CounterBatch] = None
    limiter: Optional[trio.CapacityLimiter] = None
    governor: Optional[LagGovernor] = None  # moves the limiter's cap with the loop's lag
    policy_generation: Callable[[], int] = lambda: 0
    # IMA entries checked per agent (transitions.py AgentStates.ima_progress, the status
    # page's source): a deferred good quote moves it as a written one does.
    ima_progress: Optional[dict[str, int]] = None

    def progress(self, agent_id: str, entries: Optional[int]) -> None:
        if self.ima_progress is not None and entries is not None:
            self.ima_progress[agent_id] = entries

    def in_flight(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.limiter if self.limiter is not None else _NO_LIMIT


class _NoLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()


class AgentPoller:
    def __init__(
        self,
        store: VerifierStore,
        settings: EngineSettings,
        transition: Transition,
        metrics: Optional[VerifierMetrics] = None,
        levers: Optional[PollerLevers] = None,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._settings = settings
        self._transition = transition
        self._levers = levers or PollerLevers()

    async def _apply(
        self,
        agent: AgentRecord,
        ev: Event,
        *,
        failure: Optional[FailureEvent] = None,
        ima_entries: Optional[int] = None,
        **changes: Any,
    ) -> AgentRecord:
        """A state change, written at once with any counters still pending for the agent."""
        if self._levers.counters is not None:
            changes = {**self._levers.counters.take(agent.agent_id), **changes}
        return await self._transition(
            agent, ev, failure=failure, ima_entries=ima_entries, **changes
        )

    async def run(self, agent: AgentRecord, channel: AgentChannel) -> None:
        """Poll until the agent leaves the polling states (or the task is cancelled)."""
        agent, memory = await self._prepare(agent, channel)
        if memory is None:
            return
        while agent.state in POLLING or (memory.polls_on and agent.state is State.INVALID_QUOTE):
            agent = await self._step(agent, channel, memory)

    async def _prepare(
        self, agent: AgentRecord, channel: AgentChannel
    ) -> tuple[AgentRecord, Optional[_Memory]]:
        """Negotiate the API version (retrying as for quotes); the memory to poll with."""
        runtime_policy = await self._load_runtime_policy(agent)
        scratch = _Memory(ApiVersion(0, 0), None)  # counts contact failures before we know more
        while True:
            try:
                theirs = await channel.versions()
                version = negotiate(SUPPORTED_VERSIONS, theirs)
            except AgentContactError as exc:
                agent = await self._contact_failed(agent, exc, scratch)
                if agent.state not in POLLING:
                    return agent, None
                continue
            except AttestProtocolError as exc:
                failure = event(Component.INTERNAL, "api_version", str(exc)[:200], False)
                return await self._apply(agent, Event.QUOTE_INVALID, failure=failure), None
            if str(version) != agent.supported_version:
                await self._store.update_agent(agent.agent_id, supported_version=str(version))
            generation = self._levers.policy_generation()
            memory = _Memory(version, runtime_policy, await self._load_mb_policy(agent))
            memory.policy_generation = generation
            memory.contact_failures = scratch.contact_failures
            return agent, memory

    async def _load_runtime_policy(self, agent: AgentRecord) -> Optional[RuntimePolicy]:
        record = await self._store.get_runtime_policy(agent.runtime_policy_name)
        if record is None or not record.has_policy:
            return None
        policy = load_runtime_policy(unwrap(record.runtime_policy.encode("utf-8")))
        return with_agent_keys(policy, agent.ima_sign_verification_keys)

    async def _load_mb_policy(self, agent: AgentRecord) -> Optional[MbPolicy]:
        record = await self._store.get_mb_policy(agent.mb_policy_name)
        if record is None:
            return None
        return load_mb_policy(record.mb_policy, self._settings.measured_boot_policy_name)

    async def _step(
        self, agent: AgentRecord, channel: AgentChannel, memory: _Memory
    ) -> AgentRecord:
        try:
            if agent.state in (State.PROVIDE_V, State.PROVIDE_V_RETRY):
                return await self._provide_v(agent, channel, memory)
            return await self._quote(agent, channel, memory)
        except AgentContactError as exc:
            return await self._contact_failed(agent, exc, memory)

    async def _contact_failed(
        self, agent: AgentRecord, exc: AgentContactError, memory: _Memory
    ) -> AgentRecord:
        memory.contact_failures += 1
        log.info("agent %s: %s (failure %d)", agent.agent_id, exc.reason, memory.contact_failures)
        retrying = agent.state in (State.GET_QUOTE_RETRY, State.PROVIDE_V_RETRY)
        if retrying and memory.contact_failures > self._settings.max_retries:
            message = f"agent unreachable after {self._settings.max_retries} retries"
            failure = event(Component.INTERNAL, "unreachable", message, False)
            return await self._apply(agent, Event.RETRIES_EXHAUSTED, failure=failure)
        agent = await self._apply(agent, Event.CONTACT_FAILED)
        await trio.sleep(retry_delay(self._settings, memory.contact_failures))
        return agent

    async def _provide_v(
        self, agent: AgentRecord, channel: AgentChannel, memory: _Memory
    ) -> AgentRecord:
        if agent.v is None or memory.full_quote_due or not agent.public_key:
            return await self._apply(agent, Event.V_DELIVERED)  # nothing to deliver
        await channel.provide_v(memory.version, encrypt_v(agent.public_key, agent.v))
        memory.contact_failures = 0
        log.info("agent %s: V delivered", agent.agent_id)
        return await self._apply(agent, Event.V_DELIVERED)

    async def _quote(
        self, agent: AgentRecord, channel: AgentChannel, memory: _Memory
    ) -> AgentRecord:
        await self._fresh_policies(agent, memory)  # before the mask is chosen from them
        full = memory.full_quote_due
        nonce = new_nonce()
        request = QuoteRequest(
            nonce=nonce,
            mask=quote_mask(
                agent.tpm_policy,
                with_ima=memory.runtime_policy is not None,
                with_mb=memory.mb_policy is not None,
            ),
            partial=not full,
            ima_ml_entry=memory.ima_state.next_entry if memory.ima_state is not None else 0,
        )
        try:
            async with self._levers.in_flight():
                with timed(self._metrics.round_trip if self._metrics else None):
                    answer = await channel.integrity_quote(memory.version, request)
            evidence = parse_evidence(answer)
        except AgentContactError:
            raise  # retried by _step; it is an AttestProtocolError too, so it goes first
        except (AgentProtocolError, AttestProtocolError) as exc:
            context = {"message": "parsing agent get quote response failed", "data": str(exc)[:200]}
            failure = event(Component.QUOTE_VALIDATION, "invalid_data", context, False)
            return await self._apply(agent, Event.QUOTE_INVALID, failure=failure)
        memory.contact_failures = 0
        with timed(self._metrics.check_time if self._metrics else None):
            result = check_evidence(self._check_input(agent, memory, nonce), evidence)
        return await self._record(agent, memory, evidence, result, full=full)

    async def _fresh_policies(self, agent: AgentRecord, memory: _Memory) -> None:
        """Reload the runtime and measured-boot policies if one was changed since loaded."""
        generation = self._levers.policy_generation()
        if generation != memory.policy_generation:
            memory.runtime_policy = await self._load_runtime_policy(agent)
            memory.mb_policy = await self._load_mb_policy(agent)
            memory.policy_generation = generation

    def _check_input(self, agent: AgentRecord, memory: _Memory, nonce: str) -> CheckInput:
        if memory.tpm_policy is None:
            memory.tpm_policy = parse_tpm_policy(agent.tpm_policy)
        if memory.ak is None:
            memory.ak = parse_ak(agent.ak_tpm)  # None again next time: the quote fails
        return CheckInput(
            ak_tpm_b64=agent.ak_tpm,
            nonce=nonce.encode("ascii"),
            accept_hash_algs=agent.accept_tpm_hash_algs,
            accept_enc_algs=agent.accept_tpm_encryption_algs,
            accept_sign_algs=agent.accept_tpm_signing_algs,
            tpm_policy=memory.tpm_policy,
            public_key_pem=None if memory.full_quote_due else agent.public_key or None,
            previous_clock=memory.clock,
            runtime_policy=memory.runtime_policy,
            ima_state=memory.ima_state,
            boottime=agent.boottime,
            mb_policy=memory.mb_policy,
            ak=memory.ak,
        )

    async def _record(
        self,
        agent: AgentRecord,
        memory: _Memory,
        evidence: Evidence,
        result: CheckResult,
        *,
        full: bool,
    ) -> AgentRecord:
        now = int(time.time())
        memory.polls_on = False
        if not result.ok:
            return await self._failed(agent, memory, result.failures, now)
        if full and result.public_key_pem is None:
            failure = event(
                Component.QUOTE_VALIDATION, "no_pubkey", "agent sent no public key", False
            )
            return await self._apply(agent, Event.QUOTE_INVALID, failure=failure)
        memory.full_quote_due = False
        memory.clock = result.clock
        memory.ima_state = result.ima_state
        v_due = (
            full
            and agent.v is not None
            and agent.state in (State.START, State.GET_QUOTE_RETRY, State.INVALID_QUOTE)
        )
        ev = Event.QUOTE_OK_V_DUE if v_due else Event.QUOTE_OK
        entries = None if memory.ima_state is None else memory.ima_state.next_entry
        changes = _attested(agent, evidence, result.public_key_pem, now)
        counters = self._levers.counters
        if ev is Event.QUOTE_OK and agent.state is State.GET_QUOTE and counters is not None:
            # No state change: only counters, written with the next batch (write_batch.py).
            counters.defer(agent.agent_id, changes)
            if self._metrics is not None:
                self._metrics.transition(ev, changes)
            self._levers.progress(agent.agent_id, entries)
            agent = dataclasses.replace(agent, **changes)
        else:
            agent = await self._apply(agent, ev, ima_entries=entries, **changes)
        if agent.state is State.GET_QUOTE:
            await trio.sleep(self._settings.quote_interval)
        return agent

    async def _failed(
        self,
        agent: AgentRecord,
        memory: _Memory,
        failures: tuple[FailureEvent, ...],
        now: int,
    ) -> AgentRecord:
        """Keylime's handling of a failed attestation (cloud_verifier_tornado.py
        ``process_agent``): the most severe event is recorded, and a revocation sent, only
        when it is more severe than the one on record; polling stops on an irrecoverable
        event or the highest label, and otherwise goes on after the quote interval."""
        severity = self._settings.severity
        failures = severity.classify(failures)
        worst = most_severe(failures)
        if severity.stops_polling(failures):
            return await self._apply(
                agent, Event.QUOTE_INVALID, failure=worst, last_received_quote=now
            )
        memory.polls_on = True
        if agent.severity_level is None or worst.severity_level > agent.severity_level:
            agent = await self._apply(
                agent, Event.QUOTE_INVALID_RECOVERABLE, failure=worst, last_received_quote=now
            )
        else:
            log.warning("agent %s: %s again", agent.agent_id, worst.event_id)
        await trio.sleep(self._settings.quote_interval)
        return agent


def _attested(
    agent: AgentRecord, evidence: Evidence, public_key: Optional[str], now: int
) -> dict[str, Any]:
    """The columns a good quote updates (Keylime: attestation_count, timestamps, algorithms)."""
    return {
        "public_key": public_key or "",
        "hash_alg": evidence.hash_alg,
        "enc_alg": evidence.enc_alg,
        "sign_alg": evidence.sign_alg,
        "boottime": evidence.boottime,
        "attestation_count": agent.attestation_count + 1,
        "last_received_quote": now,
        "last_successful_attestation": now,
    }
