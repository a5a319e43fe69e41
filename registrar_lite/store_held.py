"""Re-registrations of an active agent, held beside its record until they are activated.

EK, AK and the mTLS certificate are public, so anyone on the plain port can replay an active
agent's registration.  Keylime (registrar_agent.py) overwrites the record: the agent goes back
to pending, the tenant's ``add`` fails and the contact address is the replayer's.  Here such a
re-registration is written to ``registrar_held`` instead; the active row, its contact address
and its regcount stay as they are until the held one is activated, which takes the TPM that
owns the EK (the challenge is bound to it).  A wrong tag drops only the held row.

Schema: ``registrar_held`` has the columns of ``registrar_agents``.
"""

from __future__ import annotations

import sqlite3
from typing import Optional

# The columns of registrar_agents (store.py AgentRecord), in order.
COLUMNS = (
    "agent_id", "ek_tpm", "ekcert", "aik_tpm", "iak_tpm", "iak_cert", "idevid_tpm",
    "idevid_cert", "iak_attest", "iak_sign", "mtls_cert", "ip", "port", "challenge_key",
    "active", "regcount",
)  # fmt: skip
# The columns of an agent record, shared by the active table and the held one so the two
# can never drift apart.
_RECORD_COLUMNS_SQL = """
    agent_id TEXT PRIMARY KEY NOT NULL,
    ek_tpm BLOB NOT NULL, ekcert BLOB, aik_tpm BLOB NOT NULL,
    iak_tpm BLOB, iak_cert BLOB, idevid_tpm BLOB, idevid_cert BLOB,
    iak_attest BLOB, iak_sign BLOB,
    mtls_cert TEXT, ip TEXT, port INTEGER,
    challenge_key TEXT NOT NULL, active INTEGER NOT NULL, regcount INTEGER NOT NULL
"""


def record_table_schema(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a table of agent records named ``table``."""
    return f"\nCREATE TABLE IF NOT EXISTS {table} ({_RECORD_COLUMNS_SQL})\n"


HELD_SCHEMA = record_table_schema("registrar_held")
_NAMES = ", ".join(COLUMNS)
_HOLD = (
    f"INSERT OR REPLACE INTO registrar_held ({_NAMES}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)
_SELECT = f"SELECT {_NAMES} FROM registrar_held WHERE agent_id = ?"  # noqa: S608 - constant
_PROMOTE = (
    f"INSERT OR REPLACE INTO registrar_agents ({_NAMES}) "  # noqa: S608 - constant
    f"SELECT {_NAMES} FROM registrar_held WHERE agent_id = ? AND challenge_key = ?"
)


def hold(conn: sqlite3.Connection, row: tuple[object, ...]) -> None:
    """Inside the caller's transaction: keep ``row`` (inactive) beside the active one."""
    conn.execute(_HOLD, row)


def get_held(conn: sqlite3.Connection, agent_id: str) -> Optional[tuple[object, ...]]:
    row = conn.execute(_SELECT, (agent_id,)).fetchone()
    return None if row is None else tuple(row)


def promote(conn: sqlite3.Connection, agent_id: str, challenge_key: str) -> bool:
    """The held row with ``challenge_key`` replaces the active one, active; False if none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute(_PROMOTE, (agent_id, challenge_key)).rowcount > 0
        if found:
            conn.execute("UPDATE registrar_agents SET active = 1 WHERE agent_id = ?", (agent_id,))
            conn.execute("DELETE FROM registrar_held WHERE agent_id = ?", (agent_id,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def drop_held(conn: sqlite3.Connection, agent_id: str, challenge_key: Optional[str]) -> bool:
    """Delete the held row (only the one with ``challenge_key`` when given)."""
    if challenge_key is None:
        return (
            conn.execute("DELETE FROM registrar_held WHERE agent_id = ?", (agent_id,)).rowcount > 0
        )
    sql = "DELETE FROM registrar_held WHERE agent_id = ? AND challenge_key = ?"
    return conn.execute(sql, (agent_id, challenge_key)).rowcount > 0
