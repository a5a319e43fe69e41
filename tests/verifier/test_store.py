"""The SQLite store: every REST field survives a restart; adds are atomic; policies by name."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from verifier_lite.errors import ConflictError
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.states import State
from verifier_lite.store import SqliteVerifierStore


def record(agent_id: str = "a1", **changes: object) -> AgentRecord:
    base = AgentRecord(
        agent_id=agent_id, v="dmFsdWU=", ip="127.0.0.1", port=9002,
        operational_state=int(State.START), public_key="", tpm_policy='{"mask": "0x10000"}',
        meta_data="{}", ima_sign_verification_keys="", revocation_key="",
        accept_tpm_hash_algs=("sha256",), accept_tpm_encryption_algs=("rsa", "ecc"),
        accept_tpm_signing_algs=("rsassa",), hash_alg="", enc_alg="", sign_alg="", boottime=0,
        supported_version="2.1", mtls_cert="PEM", ak_tpm="AAAA", verifier_id="default",
        verifier_ip="127.0.0.1", verifier_port=8881, severity_level=None, last_event_id=None,
        attestation_count=0, last_received_quote=0, last_successful_attestation=0,
        runtime_policy_name=agent_id, mb_policy_name=agent_id,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cv.sqlite"
    store = await SqliteVerifierStore.open(path)
    try:
        runtime = RuntimePolicyRecord("a1", '{"x": 1}', None, True)
        await store.add_agent(record(), runtime, MbPolicyRecord("a1", None))
        changed = await store.update_agent(
            "a1", operational_state=int(State.GET_QUOTE), attestation_count=5,
            last_event_id="pcr_validation.invalid_pcr_16", severity_level=6,
            accept_tpm_hash_algs=("sha384", "sha256"),
        )  # fmt: skip
        assert changed
    finally:
        await store.aclose()
    store = await SqliteVerifierStore.open(path)
    try:
        again = await store.get_agent("a1")
        assert again == record(
            operational_state=int(State.GET_QUOTE), attestation_count=5,
            last_event_id="pcr_validation.invalid_pcr_16", severity_level=6,
            accept_tpm_hash_algs=("sha384", "sha256"),
        )  # fmt: skip
        assert await store.get_runtime_policy("a1") == RuntimePolicyRecord(
            "a1", '{"x": 1}', None, True
        )
        assert await store.get_mb_policy("a1") == MbPolicyRecord("a1", None)
    finally:
        await store.aclose()
    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_adding_a_taken_id_changes_nothing(tmp_path: Path) -> None:
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    try:
        await store.add_agent(record(), None, None)
        policy = RuntimePolicyRecord("new-policy", "{}", None, True)
        with pytest.raises(ConflictError):
            await store.add_agent(record(port=1), policy, MbPolicyRecord("new-mb", "{}"))
        assert (await store.get_agent("a1")) == record()
        assert await store.get_runtime_policy("new-policy") is None  # rolled back
        assert await store.get_mb_policy("new-mb") is None
    finally:
        await store.aclose()


async def test_policies_by_name_and_their_users(tmp_path: Path) -> None:
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    try:
        rp = RuntimePolicyRecord("shared", "{}", None, True)
        assert await store.add_runtime_policy(rp, replace=False)
        assert not await store.add_runtime_policy(rp, replace=False)
        assert not await store.add_runtime_policy(replace(rp, name="absent"), replace=True)
        assert await store.add_mb_policy(MbPolicyRecord("mb", "{}"), replace=False)
        await store.add_agent(record(runtime_policy_name="shared", mb_policy_name="mb"), None, None)
        assert await store.policy_users("runtime", "shared") == ["a1"]
        assert await store.policy_users("mb", "mb") == ["a1"]
        assert await store.runtime_policy_names() == ["shared"]
        assert await store.mb_policy_names() == ["mb"]
        assert await store.delete_agent("a1")
        assert not await store.update_agent("a1", attestation_count=1)
        assert await store.delete_runtime_policy("shared")
        with pytest.raises(ValueError, match="not updatable"):
            await store.update_agent("a1", verifier="x")
    finally:
        await store.aclose()


async def test_a_batch_of_updates_equals_the_same_updates_one_by_one(tmp_path: Path) -> None:
    # Enough agents for several batched statements, two column sets (a full quote also
    # stores the NK key), an agent named twice, one deleted meanwhile, a list column.
    updates: list[tuple[str, dict[str, object]]] = []
    for i in range(1203):
        changes: dict[str, object] = {"attestation_count": i, "last_received_quote": 1000 + i}
        if i % 3 == 0:
            changes["public_key"] = f"PEM {i}"
        updates.append((f"a{i}", changes))
    updates.append(("a7", {"attestation_count": 70, "accept_tpm_hash_algs": ("sha384",)}))
    updates.append(("gone", {"attestation_count": 1}))
    batched, single = tmp_path / "batched.sqlite", tmp_path / "single.sqlite"
    for path in (batched, single):
        store = await SqliteVerifierStore.open(path)
        try:
            for i in range(1203):
                await store.add_agent(record(f"a{i}"), None, None)
            if path == batched:
                assert await store.update_agents_many(updates) == 1203
            else:
                for agent_id, changes in updates:
                    await store.update_agent(agent_id, **changes)
        finally:
            await store.aclose()
    stores = [await SqliteVerifierStore.open(p) for p in (batched, single)]
    try:
        got, expected = [await s.list_agents() for s in stores]
        assert got == expected
        a7 = next(a for a in got if a.agent_id == "a7")
        assert (a7.attestation_count, a7.accept_tpm_hash_algs) == (70, ("sha384",))
        assert a7.last_received_quote == 1007  # the earlier update's other column stays
    finally:
        for s in stores:
            await s.aclose()


async def test_a_batch_naming_an_unknown_column_writes_nothing(tmp_path: Path) -> None:
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    try:
        await store.add_agent(record(), None, None)
        with pytest.raises(ValueError, match="not updatable"):
            await store.update_agents_many(
                [("a1", {"attestation_count": 5}), ("a1", {"verifier": "x"})]
            )
        assert (await store.get_agent("a1")) == record()
    finally:
        await store.aclose()
