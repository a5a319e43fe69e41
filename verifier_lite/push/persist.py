"""Push state as JSON text for the store: attestation histories and active sessions.

What Keylime 7.14.3 keeps in its ``attestations``, ``evidence_items`` and ``sessions`` tables
(keylime/models/verifier/), here one document per agent (its history, with the IMA state and
TPM clock the next attestation builds on) and one per active session (the token's salt and
hash, never the token).  Pending sessions (a challenge not yet answered) are not stored, as
in Keylime: a restart costs the agent one more proof.  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from cryptography.hazmat.primitives.serialization import load_der_public_key

from attest_protocol.policy import ImaState
from attest_protocol.policy.keys import LearnedKey
from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.constants import TpmAlg
from verifier_lite.push.attestations import Attestation, Passed, PushHistory
from verifier_lite.push.sessions import Session

HISTORY = "history"
SESSION = "session"


def _ima_out(state: Optional[ImaState]) -> Optional[dict[str, Any]]:
    if state is None:
        return None
    keys = [
        {"keyring": k.keyring, "keyid": k.keyid, "der": k.der().hex()} for k in state.learned_keys
    ]
    return {
        "hash_alg": int(state.hash_alg),
        "pcr10": state.pcr10.hex(),
        "next_entry": state.next_entry,
        "learned_keys": keys,
        "lag": state.lag,
    }


def _ima_in(doc: Optional[dict[str, Any]]) -> Optional[ImaState]:
    if doc is None:
        return None
    keys = tuple(
        LearnedKey(k["keyring"], k["keyid"], load_der_public_key(bytes.fromhex(k["der"])))  # type: ignore[arg-type]
        for k in doc["learned_keys"]
    )
    return ImaState(
        TpmAlg(doc["hash_alg"]), bytes.fromhex(doc["pcr10"]), doc["next_entry"], keys, doc["lag"]
    )


def history_to_text(history: PushHistory) -> str:
    passed = history.passed
    clock = history.clock
    doc = {
        "attestations": [dataclasses.asdict(a) for a in history.attestations],
        "next_index": history.next_index,
        "passed": None
        if passed is None
        else {"boot_time": passed.boot_time, "ima_state": _ima_out(passed.ima_state)},
        "clock": None if clock is None else dataclasses.asdict(clock),
        "clock_boottime": history.clock_boottime,
    }
    return json.dumps(doc)


def history_from_text(text: str) -> PushHistory:
    doc = json.loads(text)
    passed = doc["passed"]
    return PushHistory(
        attestations=[Attestation(**a) for a in doc["attestations"]],
        next_index=doc["next_index"],
        passed=None
        if passed is None
        else Passed(passed["boot_time"], _ima_in(passed["ima_state"])),
        clock=None if doc["clock"] is None else ClockInfo(**doc["clock"]),
        clock_boottime=doc["clock_boottime"],
    )


def session_to_text(session: Session) -> str:
    doc = dataclasses.asdict(session)
    for name in ("challenge", "token_salt", "token_hash"):
        doc[name] = doc[name].hex()
    return json.dumps(doc)


def session_from_text(text: str) -> Session:
    doc = json.loads(text)
    for name in ("challenge", "token_salt", "token_hash"):
        doc[name] = bytes.fromhex(doc[name])
    return Session(**doc)
