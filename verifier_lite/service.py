"""The verifier's operations behind the REST routes: store writes plus engine start/stop.

Behaviour follows keylime/cloud_verifier_tornado.py (7.14.3): adding an existing agent or a
named policy that already exists is 409; a named policy that does not exist is 404; no
runtime policy means the empty policy stored under the agent's id; ``stop`` sets
TENANT_FAILED and ends polling; ``reactivate`` sets START and polls again.  Unlike Keylime,
DELETE always answers 200: the agent's task is cancelled first, so no poll is in flight to
wait for (Keylime answers 202 and finishes later).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from attest_protocol.api_version import CURRENT_VERSION, ApiVersion
from attest_protocol.errors import ParseError
from verifier_lite.agent_client import MTLS_DISABLED
from verifier_lite.config import VerifierConfig
from verifier_lite.engine import Engine
from verifier_lite.errors import (
    AgentNotFoundError,
    ConflictError,
    PolicyNotFoundError,
    RequestError,
)
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord, status_view
from verifier_lite.states import Event, State
from verifier_lite.store import VerifierStore
from verifier_lite.validation import AddAgentRequest

log = logging.getLogger("limelet.verifier")

# Keylime's push_agent_monitor._TIMEOUT_MULTIPLIER (get_maximum_attestation_interval): an
# attestation is overdue after this many quote intervals, and PASS then turns PENDING.
MAX_INTERVAL_PERIODS = 5
# Keylime ima.EMPTY_RUNTIME_POLICY stand-in: stored, but it means "no IMA checks".
EMPTY_RUNTIME_POLICY = ""


class Verifier:
    def __init__(self, store: VerifierStore, engine: Engine, config: VerifierConfig) -> None:
        self.store = store
        self.engine = engine
        self.config = config

    async def _agent(self, agent_id: str) -> AgentRecord:
        agent = await self.store.get_agent(agent_id)
        # In a shared fleet every verifier answers for every agent (verifier_id: its poller).
        if agent is None or (
            agent.verifier_id != self.config.uuid and not self.config.shares_fleet
        ):
            raise AgentNotFoundError(agent_id)
        return agent

    async def status(self, agent_id: str) -> dict[str, Any]:
        return await self._view(await self._agent(agent_id))

    async def _view(
        self, agent: AgentRecord, in_force: Optional[tuple[frozenset[str], frozenset[str]]] = None
    ) -> dict[str, Any]:
        """One agent's status; a bulk answer passes ``in_force`` (store.policies_in_force),
        read once for the whole fleet instead of two policy reads per agent."""
        if in_force is None:
            runtime = await self.store.get_runtime_policy(agent.runtime_policy_name)
            mb = await self.store.get_mb_policy(agent.mb_policy_name)
            has_runtime = runtime is not None and runtime.has_policy
            has_mb = mb is not None and mb.mb_policy is not None
        else:
            has_runtime = agent.runtime_policy_name in in_force[0]
            has_mb = agent.mb_policy_name in in_force[1]
        interval = self.config.quote_interval
        return status_view(
            agent,
            has_runtime_policy=has_runtime,
            has_mb_policy=has_mb,
            quote_interval=interval,
            max_interval=interval * MAX_INTERVAL_PERIODS,
            now=time.time(),
        )

    async def list_ids(self, verifier_id: Optional[str]) -> list[list[str]]:
        # Keylime answers SQLAlchemy rows, which JSON-encode as one-element lists.
        return [[a.agent_id] for a in await self.store.list_agents(verifier_id)]

    async def bulk(self, verifier_id: Optional[str]) -> dict[str, Any]:
        agents = await self.store.list_agents(verifier_id)
        in_force = await self.store.policies_in_force()
        return {a.agent_id: await self._view(a, in_force) for a in agents}

    async def add(self, agent_id: str, req: AddAgentRequest) -> None:
        push = req.ip == "" and req.port == 0  # push/enrol.py: no address, never polled
        needs_cert = self.config.enable_agent_mtls and not push
        if needs_cert and req.mtls_cert in (None, "", MTLS_DISABLED):
            # Keylime's text for the same refusal (enable_agent_mtls = True).
            raise RequestError("mtls_cert", "mTLS certificate for agent is required!")
        runtime = await self._runtime_policy_for(agent_id, req)
        mb = await self._mb_policy_for(agent_id, req)
        await self.store.add_agent(self._record(agent_id, req, runtime.name, mb.name), runtime, mb)
        if push:
            log.info("agent %s added in push mode", agent_id)
            return
        log.info("agent %s added; polling %s:%d", agent_id, req.ip, req.port)
        self.engine.start(agent_id)

    async def _runtime_policy_for(self, agent_id: str, req: AddAgentRequest) -> RuntimePolicyRecord:
        name = req.runtime_policy_name
        if name:
            stored = await self.store.get_runtime_policy(name)
            if req.runtime_policy and stored is not None:
                raise ConflictError(f"IMA policy with name {name} already exists.")
            if not req.runtime_policy:
                if stored is None:
                    raise PolicyNotFoundError("IMA policy", name)
                return stored
        text = req.runtime_policy or EMPTY_RUNTIME_POLICY
        return RuntimePolicyRecord(name or agent_id, text, None, bool(text))

    async def _mb_policy_for(self, agent_id: str, req: AddAgentRequest) -> MbPolicyRecord:
        name = req.mb_policy_name or agent_id
        stored = await self.store.get_mb_policy(name)
        if req.mb_policy is not None and stored is not None:
            raise ConflictError(f"mb_policy with name {name} already exists.")
        if req.mb_policy_name and req.mb_policy is None and stored is None:
            raise PolicyNotFoundError("mb_policy", name)
        return stored if stored is not None else MbPolicyRecord(name, req.mb_policy)

    def _record(self, agent_id: str, req: AddAgentRequest, runtime: str, mb: str) -> AgentRecord:
        version = req.supported_version or str(CURRENT_VERSION)
        try:
            ApiVersion.parse(version)
        except ParseError:
            version = str(CURRENT_VERSION)
        return AgentRecord(
            agent_id=agent_id,
            v=req.v,
            ip=req.ip,
            port=req.port,
            operational_state=int(State.START),
            public_key="",
            tpm_policy=req.tpm_policy,
            meta_data=req.metadata,
            ima_sign_verification_keys=req.ima_sign_verification_keys,
            revocation_key=req.revocation_key,
            accept_tpm_hash_algs=req.accept_tpm_hash_algs,
            accept_tpm_encryption_algs=req.accept_tpm_encryption_algs,
            accept_tpm_signing_algs=req.accept_tpm_signing_algs,
            hash_alg="",
            enc_alg="",
            sign_alg="",
            boottime=0,
            supported_version=version,
            mtls_cert=req.mtls_cert,
            ak_tpm=req.ak_tpm,
            verifier_id=self.config.uuid,
            verifier_ip=req.verifier_ip or self.config.ip,
            verifier_port=req.verifier_port or self.config.port,
            severity_level=None,
            last_event_id=None,
            attestation_count=0,
            last_received_quote=0,
            last_successful_attestation=0,
            runtime_policy_name=runtime,
            mb_policy_name=mb,
        )

    async def delete(self, agent_id: str) -> None:
        agent = await self._agent(agent_id)
        self.engine.stop(agent_id)
        # TERMINATED first: should the delete fail, the row says polling has ended.
        await self.engine.states.apply(agent, Event.DELETE)
        await self.store.delete_agent(agent_id)
        log.info("agent %s deleted", agent_id)

    async def stop(self, agent_id: str) -> None:
        agent = await self._agent(agent_id)
        self.engine.stop(agent_id)
        await self.engine.states.apply(agent, Event.STOP)

    async def reactivate(self, agent_id: str) -> None:
        agent = await self._agent(agent_id)
        self.engine.stop(agent_id)  # a running task must not write after our START
        await self.engine.states.apply(agent, Event.REACTIVATE)
        if not (agent.ip == "" and agent.port == 0):  # push agents are never polled
            self.engine.start(agent_id)

    # Runtime policies (``/allowlists``) and measured-boot policies (``/mbpolicies``).

    async def add_runtime_policy(
        self, name: str, text: str, tpm_policy: Optional[str], *, update: bool
    ) -> None:
        record = RuntimePolicyRecord(name, text, tpm_policy, bool(text))
        if not await self.store.add_runtime_policy(record, replace=update):
            if update:
                raise PolicyNotFoundError("Runtime policy", name)
            raise ConflictError(f"Runtime policy with name {name} already exists")
        if update:
            self.engine.policy_changed()  # polling tasks reload their cached policy

    async def runtime_policy(self, name: str) -> dict[str, Any]:
        record = await self.store.get_runtime_policy(name)
        if record is None:
            raise PolicyNotFoundError("Runtime policy", name)
        # Keylime's response keys, including its "tmp_policy" spelling.
        return {
            "name": record.name,
            "tmp_policy": record.tpm_policy,
            "runtime_policy": record.runtime_policy,
        }

    async def delete_runtime_policy(self, name: str) -> None:
        await self.runtime_policy(name)
        users = await self.store.policy_users("runtime", name)
        if users:
            raise ConflictError(
                f"Can't delete allowlist as it's currently in use by agent {users[0]}"
            )
        await self.store.delete_runtime_policy(name)

    async def add_mb_policy(self, name: str, text: Optional[str], *, update: bool) -> None:
        if not await self.store.add_mb_policy(MbPolicyRecord(name, text), replace=update):
            if update:
                raise PolicyNotFoundError("Measured boot policy", name)
            raise ConflictError(f"Measured boot policy with name {name} already exists")
        if update:
            self.engine.policy_changed()  # polling tasks reload their cached policy

    async def mb_policy(self, name: str) -> dict[str, Any]:
        record = await self.store.get_mb_policy(name)
        if record is None:
            raise PolicyNotFoundError("Measured boot policy", name)
        # The stored JSON text, as Keylime's MbpolicyHandler.get returns its column.
        return {"name": record.name, "mb_policy": record.mb_policy}

    async def delete_mb_policy(self, name: str) -> None:
        await self.mb_policy(name)
        users = await self.store.policy_users("mb", name)
        if users:
            raise ConflictError(
                f"Can't delete mb_policy as it's currently in use by agent {users[0]}"
            )
        await self.store.delete_mb_policy(name)
