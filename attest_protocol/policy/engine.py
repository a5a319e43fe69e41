"""Incremental evaluation of IMA entries against a runtime policy and a quoted PCR 10.

Per entry, in Keylime's order (keylime/ima/ima.py, _process_measurement_list; ast.py,
Entry.invalid): extend the running PCR 10; the entry must be for PCR 10; a violation entry
(all-zero template hash, extended as all 0xff) has nothing to check; the template hash must
cover the template data; then the policy (:mod:`attest_protocol.policy.checks`).  Every entry
is checked: one failure does not stop the others from being reported.

The quote may lag the log: the kernel appends to the log before it extends the PCR, and the
agent reads log and quote at different moments.  The first prefix of ``state + entries``
whose replay equals the quoted PCR 10 is the match (possibly before any new entry); the new
state stops there and the entries beyond it are sent (and checked) again next time.  No
matching prefix is a PCR_MISMATCH.  If the previous round left ``lag`` entries beyond its
match, this round's match must cover at least those (or the whole log): otherwise the quote
is not catching up and the round fails with QUOTE_NO_PROGRESS (agentstates.py,
check_quote_progress).

Speed: the template data is hashed once when the bank is the log's algorithm (the template
hash is then the extend digest), hashlib is used directly, excludes are one regex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Callable, Optional

from attest_protocol.ima.entry import ImaEntry
from attest_protocol.keylime_facts import IMA_PCR
from attest_protocol.policy import checks
from attest_protocol.policy.keys import LearnedKey, PublicKey
from attest_protocol.policy.model import RuntimePolicy
from attest_protocol.policy.verdict import ImaFailure, ImaFailureReason, ImaState, ImaVerdict
from attest_protocol.tpm2.constants import TpmAlg, digest_size

if TYPE_CHECKING:  # hashlib's context type; _hashlib exists only in OpenSSL builds
    from _hashlib import HASH

# The verdict lists at most this many failures (the count is complete): a log of 100,000
# unknown files should not make a 100,000-item report.
MAX_REPORTED_FAILURES = 1000
# Path of the boot aggregate entry (ima_init.c, boot_aggregate_name).
BOOT_AGGREGATE_PATH = "boot_aggregate"

# hashlib's direct constructors: a third faster than hashlib.new(name) per call.
_HASHLIB: dict[TpmAlg, Callable[[bytes], HASH]] = {
    TpmAlg.SHA1: hashlib.sha1,
    TpmAlg.SHA256: hashlib.sha256,
    TpmAlg.SHA384: hashlib.sha384,
    TpmAlg.SHA512: hashlib.sha512,
}
Hasher = Callable[[bytes], bytes]


def hash_proto(alg: TpmAlg) -> HASH:
    """An empty context of ``alg`` to ``copy()`` (SHA-1 is the kernel's template hash).

    Copying a fresh context is much cheaper than constructing one (OpenSSL 3 looks the
    algorithm up on every construction), and this runs three times per entry.
    """
    ctor = _HASHLIB.get(alg)
    if ctor is not None:
        return ctor(b"")
    if alg is TpmAlg.SM3_256:
        return hashlib.new("sm3")
    raise ValueError(f"no hash for {alg!r}")


def hasher(alg: TpmAlg) -> Hasher:
    """data -> digest in ``alg``, by copying :func:`hash_proto`."""
    copy = hash_proto(alg).copy

    def digest(data: bytes) -> bytes:
        ctx = copy()
        ctx.update(data)
        return ctx.digest()

    return digest


class Round:
    """Mutable working set of one evaluation (package-internal; never escapes it)."""

    def __init__(
        self, policy: RuntimePolicy, state: ImaState, boot_aggregates: Collection[bytes]
    ) -> None:
        self.policy = policy
        self.digests = policy.digests
        if boot_aggregates:  # Keylime adds measured-boot values to digests["boot_aggregate"]
            extended = dict(policy.digests)
            extended[BOOT_AGGREGATE_PATH] = extended.get(
                BOOT_AGGREGATE_PATH, frozenset()
            ) | frozenset(boot_aggregates)
            self.digests = extended
        self.keys: dict[int, PublicKey] = {k.keyid: k.public_key for k in state.learned_keys}
        self.keys.update(policy.verification_keys)
        self.learned: list[tuple[int, LearnedKey]] = []
        self.failures: list[ImaFailure] = []
        self.failure_count = 0

    def fail(self, failure: ImaFailure) -> None:
        self.failure_count += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(failure)

    def check_policy(self, entry: ImaEntry, index: int) -> None:
        name = entry.template_name
        learned = None
        if name == "ima-sig":
            failure = checks.check_signed(self.digests, self.keys, entry, self.policy)
        elif name == "ima-buf":
            failure, learned = checks.check_buffer(entry, self.policy)
        else:
            failure = checks.check_digest(self.digests, entry, self.policy)
        if failure is not None:
            self.fail(failure)
        if learned is not None:
            self.learned.append((index, learned))
            if learned.keyid not in self.policy.verification_keys:
                self.keys[learned.keyid] = learned.public_key


class Hashers:
    """Hash functions of one round: the PCR bank's and each log algorithm met."""

    def __init__(self, bank: TpmAlg) -> None:
        self.bank_alg = bank
        self.bank_proto = hash_proto(bank)
        self.bank = hasher(bank)
        self.ff = b"\xff" * digest_size(bank)
        self.log: dict[TpmAlg, Hasher] = {bank: self.bank}

    def for_log(self, alg: TpmAlg) -> Hasher:
        found = self.log.get(alg)
        if found is None:
            found = self.log[alg] = hasher(alg)
        return found


def check_entry(rnd: Round, hs: Hashers, entry: ImaEntry, index: int, reject: bool) -> bytes:
    """Check one entry, record any failure; return what the kernel extended for it."""
    template_hash = entry.template_hash
    if template_hash == bytes(len(template_hash)):  # violation (ima_main.c, ima_add_violation)
        if entry.pcr != IMA_PCR:
            rnd.fail(ImaFailure.of(entry, ImaFailureReason.WRONG_PCR))
        elif reject:
            rnd.fail(ImaFailure.of(entry, ImaFailureReason.VIOLATION))
        return hs.ff
    data = entry.template_data()
    computed = hs.for_log(entry.log_alg)(data)
    # Same algorithm: the template hash is the extend digest, no second hash needed.
    extend = computed if entry.log_alg == hs.bank_alg else hs.bank(data)
    if entry.pcr != IMA_PCR:
        rnd.fail(ImaFailure.of(entry, ImaFailureReason.WRONG_PCR))
    elif computed != template_hash:
        rnd.fail(ImaFailure.of(entry, ImaFailureReason.TEMPLATE_HASH_MISMATCH))
    else:
        rnd.check_policy(entry, index)
    return extend


def evaluate(
    policy: RuntimePolicy,
    state: ImaState,
    new_entries: Sequence[ImaEntry],
    quoted_pcr10: bytes,
    hash_alg: TpmAlg,
    *,
    boot_aggregates: Collection[bytes] = (),
    reject_violations: bool = False,
) -> ImaVerdict:
    """Check ``new_entries`` (the log from ``state.next_entry`` on) against ``policy``.

    ``hash_alg`` is the quoted PCR bank and must be ``state.hash_alg``.  ``boot_aggregates``
    are extra accepted digests of the ``boot_aggregate`` entry (from the measured-boot log).
    Violation (ToMToU) entries are accepted unless ``reject_violations`` (Keylime's shipped
    configuration accepts them: verifier.conf ignore_tomtou_errors).
    """
    if hash_alg != state.hash_alg:
        raise ValueError(f"state is for {state.hash_alg.name}, quote for {hash_alg.name}")
    rnd = Round(policy, state, boot_aggregates)
    hs = Hashers(hash_alg)
    bank = hs.bank
    running = state.pcr10
    match: Optional[tuple[int, bytes]] = (0, running) if running == quoted_pcr10 else None
    for index, entry in enumerate(new_entries):
        running = bank(running + check_entry(rnd, hs, entry, index, reject_violations))
        if match is None and running == quoted_pcr10:
            match = (index + 1, running)
    return conclude(rnd, state, len(new_entries), match)


def conclude(
    rnd: Round, state: ImaState, count: int, match: Optional[tuple[int, bytes]]
) -> ImaVerdict:
    if match is None:
        rnd.fail(ImaFailure(None, "", ImaFailureReason.PCR_MISMATCH, "no prefix of the log"))
    elif state.lag > 0 and match[0] < state.lag and match[0] != count:
        detail = f"quote covers {match[0]} new entries, {state.lag} were pending"
        rnd.fail(ImaFailure(None, "", ImaFailureReason.QUOTE_NO_PROGRESS, detail))
    if rnd.failure_count or match is None:
        return ImaVerdict(
            False, ImaState.initial(state.hash_alg), tuple(rnd.failures), rnd.failure_count, None
        )
    upto, value = match
    keys = state.learned_keys + tuple(k for i, k in rnd.learned if i < upto)
    new_state = ImaState(state.hash_alg, value, state.next_entry + upto, keys, count - upto)
    return ImaVerdict(True, new_state, (), 0, upto)
