"""What an evaluation carries between quotes and what it reports (frozen values only)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional

from attest_protocol.ima.entry import ImaEntry
from attest_protocol.ima.replay import Pcr10Replay
from attest_protocol.policy.keys import LearnedKey
from attest_protocol.tpm2.constants import TpmAlg, digest_size


class ImaFailureReason(enum.Enum):
    """Why an entry (or the log as a whole) was rejected; values are stable for logs/metrics.

    Keylime's event id for each is :func:`keylime_event_id`.
    """

    NOT_IN_POLICY = "not_in_policy"  # path (or keyring, buffer name) absent
    DIGEST_MISMATCH = "digest_mismatch"  # path listed, digest not
    BAD_SIGNATURE = "bad_signature"  # signed entry, signature invalid, digest not allowed
    TEMPLATE_HASH_MISMATCH = "template_hash_mismatch"
    WRONG_PCR = "wrong_pcr"  # entry for a PCR other than 10
    UNSUPPORTED_KEY = "unsupported_key"  # keyring buffer holds a non-RSA/EC key
    VIOLATION = "violation"  # ToMToU/open-writers entry, only when rejected
    PCR_MISMATCH = "pcr_mismatch"  # no prefix of the log replays to the quote
    QUOTE_NO_PROGRESS = "quote_no_progress"  # lag did not shrink


# Keylime 7.14.3's full event id per reason (keylime/failure.py Event builds
# "<component>.<sub components>.<event>").  ast.Entry.invalid files its own events under
# Failure(IMA, ["validation"]).  With a runtime policy present -- always in the verifier, which
# substitutes EMPTY_RUNTIME_POLICY for none (keylime/tpm/tpm_main.py check_quote) -- every
# template's digest check is ima.py _validate_ima_ng under ["validation", "ima-ng"]: for ima,
# ima-ng, ima-sig after a bad signature, and ima-buf (keyrings and plain buffers) alike.
# _validate_ima_buf files invalid_key, _process_measurement_list the log-level events, both
# under plain Failure(IMA).
KEYLIME_IMA_EVENT_IDS = {
    ImaFailureReason.NOT_IN_POLICY: "ima.validation.ima-ng.not_in_allowlist",
    ImaFailureReason.DIGEST_MISMATCH: "ima.validation.ima-ng.runtime_policy_hash",
    ImaFailureReason.TEMPLATE_HASH_MISMATCH: "ima.validation.ima_hash",
    ImaFailureReason.WRONG_PCR: "ima.validation.ima_pcr",
    ImaFailureReason.UNSUPPORTED_KEY: "ima.invalid_key",
    ImaFailureReason.VIOLATION: "ima.validation.tomtou",
    ImaFailureReason.PCR_MISMATCH: "ima.pcr_mismatch",
    ImaFailureReason.QUOTE_NO_PROGRESS: "ima.quote_progress",
}
# _validate_ima_sig's own event, reached only with no runtime policy to fall back to.
KEYLIME_IMA_SIG_EVENT_ID = "ima.validator.ima-sig.invalid_signature"


@dataclasses.dataclass(frozen=True)
class ImaFailure:
    """One rejection: ``entry`` is the entry's line number in the whole log (None for the
    log-level reasons), ``path`` its file, keyring or buffer name and ``template`` its template
    name ("" for log-level).  For ``BAD_SIGNATURE``, ``fallback`` is the digest failure
    (NOT_IN_POLICY or DIGEST_MISMATCH) the entry also has: Keylime reports that one."""

    entry: Optional[int]
    path: str
    reason: ImaFailureReason
    detail: str = ""
    template: str = ""
    fallback: Optional[ImaFailureReason] = None

    @classmethod
    def of(
        cls,
        entry: ImaEntry,
        reason: ImaFailureReason,
        detail: str = "",
        fallback: Optional[ImaFailureReason] = None,
    ) -> ImaFailure:
        """The failure of one log entry."""
        return cls(entry.lineno, entry.path, reason, detail, entry.template_name, fallback)

    @property
    def keylime_event_id(self) -> str:
        return keylime_event_id(self)


def keylime_event_id(failure: ImaFailure) -> str:
    """The full id Keylime 7.14.3 records for ``failure``, e.g.
    ``ima.validation.ima-ng.not_in_allowlist`` (see KEYLIME_IMA_EVENT_IDS)."""
    reason = failure.reason
    if reason is ImaFailureReason.BAD_SIGNATURE:
        if failure.fallback is None or failure.fallback is reason:
            return KEYLIME_IMA_SIG_EVENT_ID
        reason = failure.fallback
    return KEYLIME_IMA_EVENT_IDS[reason]


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
