"""``VerifierStore`` in memory, for virtual-time tests (SQLite's worker threads would let the
autojump clock leap while a statement runs).  Same Protocol, same semantics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from verifier_lite.errors import ConflictError
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.timeline import TimelineEvent


class MemoryStore:
    def __init__(self) -> None:
        self.agents: dict[str, AgentRecord] = {}
        self.runtime: dict[str, RuntimePolicyRecord] = {}
        self.mb: dict[str, MbPolicyRecord] = {}
        self.events: dict[str, list[TimelineEvent]] = {}
        self.push_documents: dict[tuple[str, str], tuple[str, str]] = {}

    async def add_agent(
        self,
        agent: AgentRecord,
        runtime_policy: Optional[RuntimePolicyRecord],
        mb_policy: Optional[MbPolicyRecord],
    ) -> None:
        if agent.agent_id in self.agents:
            raise ConflictError("taken")
        if runtime_policy is not None:
            self.runtime.setdefault(runtime_policy.name, runtime_policy)
        if mb_policy is not None:
            self.mb.setdefault(mb_policy.name, mb_policy)
        self.agents[agent.agent_id] = agent

    async def get_agent(self, agent_id: str) -> Optional[AgentRecord]:
        return self.agents.get(agent_id)

    async def list_agents(self, verifier_id: Optional[str] = None) -> list[AgentRecord]:
        return [
            a
            for _, a in sorted(self.agents.items())
            if verifier_id is None or a.verifier_id == verifier_id
        ]

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        if agent_id not in self.agents:
            return False
        self.agents[agent_id] = replace(self.agents[agent_id], **changes)
        return True

    async def delete_agent(self, agent_id: str) -> bool:
        self.events.pop(agent_id, None)
        return self.agents.pop(agent_id, None) is not None

    async def add_runtime_policy(self, policy: RuntimePolicyRecord, *, replace: bool) -> bool:
        if (policy.name in self.runtime) != replace:
            return False
        self.runtime[policy.name] = policy
        return True

    async def get_runtime_policy(self, name: str) -> Optional[RuntimePolicyRecord]:
        return self.runtime.get(name)

    async def runtime_policy_names(self) -> list[str]:
        return sorted(self.runtime)

    async def delete_runtime_policy(self, name: str) -> bool:
        return self.runtime.pop(name, None) is not None

    async def add_mb_policy(self, policy: MbPolicyRecord, *, replace: bool) -> bool:
        if (policy.name in self.mb) != replace:
            return False
        self.mb[policy.name] = policy
        return True

    async def get_mb_policy(self, name: str) -> Optional[MbPolicyRecord]:
        return self.mb.get(name)

    async def mb_policy_names(self) -> list[str]:
        return sorted(self.mb)

    async def delete_mb_policy(self, name: str) -> bool:
        return self.mb.pop(name, None) is not None

    async def policies_in_force(self) -> tuple[frozenset[str], frozenset[str]]:
        runtime = frozenset(n for n, p in self.runtime.items() if p.has_policy)
        return runtime, frozenset(n for n, p in self.mb.items() if p.mb_policy is not None)

    async def policy_users(self, kind: str, name: str) -> list[str]:
        field = {"runtime": "runtime_policy_name", "mb": "mb_policy_name"}[kind]
        return [a.agent_id for a in self.agents.values() if getattr(a, field) == name]

    async def add_timeline_event(self, event: TimelineEvent, *, keep: int) -> None:
        kept = [*self.events.get(event.agent_id, []), event]
        self.events[event.agent_id] = kept[-keep:] if keep > 0 else []

    async def timeline(self, agent_id: str, limit: int) -> list[TimelineEvent]:
        return list(reversed(self.events.get(agent_id, [])))[:limit]

    async def aclose(self) -> None:
        return None

    async def put_push_document(self, kind: str, key: str, agent_id: str, doc: str) -> None:
        self.push_documents[(kind, key)] = (agent_id, doc)

    async def get_push_document(self, kind: str, key: str) -> Optional[str]:
        found = self.push_documents.get((kind, key))
        return None if found is None else found[1]

    async def delete_push_documents(self, kind: str, key: str) -> None:
        self.push_documents.pop((kind, key), None)
