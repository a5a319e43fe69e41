"""What an evaluation carries between quotes and what it reports (frozen values only)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional

from attest_protocol.ima.replay import Pcr10Replay
from attest_protocol.policy.keys import LearnedKey
from attest_protocol.tpm2.constants import TpmAlg, digest_size


class ImaFailureReason(enum.Enum):
    """Why an entry (or the log as a whole) was rejected; values are stable for logs/metrics.

    Keylime event ids (keylime/ima/ima.py, ast.py) in brackets.
    """

    NOT_IN_POLICY = "not_in_policy"  # path (or keyring, buffer name) absent [not_in_allowlist]
    DIGEST_MISMATCH = "digest_mismatch"  # path listed, digest not [runtime_policy_hash]
    BAD_SIGNATURE = "bad_signature"  # signed entry, signature invalid, digest not allowed
    TEMPLATE_HASH_MISMATCH = "template_hash_mismatch"  # [ima_hash]
    WRONG_PCR = "wrong_pcr"  # entry for a PCR other than 10 [ima_pcr]
    UNSUPPORTED_KEY = "unsupported_key"  # keyring buffer holds a non-RSA/EC key [invalid_key]
    VIOLATION = "violation"  # ToMToU/open-writers entry, only when rejected [tomtou]
    PCR_MISMATCH = "pcr_mismatch"  # no prefix of the log replays to the quote [pcr_mismatch]
    QUOTE_NO_PROGRESS = "quote_no_progress"  # lag did not shrink [quote_progress]


@dataclasses.dataclass(frozen=True)
class ImaFailure:
    """One rejection: ``entry`` is the entry's line number in the whole log (None for the
    log-level reasons), ``path`` its file, keyring or buffer name ("" for log-level)."""

    entry: Optional[int]
    path: str
    reason: ImaFailureReason
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class ImaState:
    """What incremental attestation keeps between quotes (Keylime: AgentAttestState).

    ``pcr10`` is PCR 10 in ``hash_alg`` after the first ``next_entry`` entries (0-based: the
    agent's ``ima_ml_entry`` to ask for next); ``learned_keys`` the keys accepted from
    ``ima-buf`` keyring entries so far; ``lag`` how many entries of the last log were beyond
    the quote (Keylime's quote_progress), which the next quote must at least catch up with.
    """

    hash_alg: TpmAlg
    pcr10: bytes
    next_entry: int = 0
    learned_keys: tuple[LearnedKey, ...] = ()
    lag: int = 0

    def __post_init__(self) -> None:
        if len(self.pcr10) != digest_size(self.hash_alg):
            raise ValueError(f"pcr10 has {len(self.pcr10)} bytes for {self.hash_alg.name}")
        if self.next_entry < 0 or self.lag < 0:
            raise ValueError("next_entry and lag must not be negative")

    @classmethod
    def initial(cls, hash_alg: TpmAlg) -> ImaState:
        """Before the first entry: PCR 10 is all zeros after a reset (PC Client PFP)."""
        return cls(hash_alg, bytes(digest_size(hash_alg)))

    def replay(self) -> Pcr10Replay:
        """A :class:`Pcr10Replay` positioned where this state stands."""
        return Pcr10Replay(self.hash_alg, self.pcr10)


@dataclasses.dataclass(frozen=True)
class ImaVerdict:
    """``ok`` iff no failures.  ``failures`` holds at most MAX_REPORTED_FAILURES; the total
    is ``failure_count``.  On failure ``new_state`` is a fresh initial state: like Keylime
    (process_measurement_list resets the attestation state), the next round re-reads the
    whole log and re-learns its keys."""

    ok: bool
    new_state: ImaState
    failures: tuple[ImaFailure, ...]
    failure_count: int
    matched: Optional[int]
