"""The named measured-boot policies and how each judges a boot log.

Keylime's verifier evaluates every agent's reference state with the one policy named by
``[verifier] measured_boot_policy_name`` (keylime/mba/elchecking/elchecker.py
``bootlog_evaluate``; the registry is keylime/mba/elchecking/policies.py):

* ``accept-all``: every log passes; ``reject-all``: none does ("reject all");
* ``example``: keylime/mba/elchecking/example.py, reading PCRs 0-9 and 14;
* ``limelet-pcrs`` (ours): the reference state is ``{"pcrs": {"<n>": ["<hex>", ...]}}`` - the
  replayed value of PCR n must be one of those listed - and/or ``{"reject_all": true}``.

A reference state that does not suit the policy fails the evaluation with the reason, as
Keylime's does ("policy evaluation failed: ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attest_protocol.eventlog.replay import BOOT_PCRS
from attest_protocol.mb.errors import RefstateError, UnknownMbPolicyError
from attest_protocol.mb.example import evaluate_example
from attest_protocol.mb.refstate import load_refstate

ACCEPT_ALL = "accept-all"
REJECT_ALL = "reject-all"
EXAMPLE = "example"
LIMELET_PCRS = "limelet-pcrs"
POLICY_NAMES = (ACCEPT_ALL, REJECT_ALL, EXAMPLE, LIMELET_PCRS)
# example.py Example.relevant_pcr_indices.
EXAMPLE_PCRS = frozenset(range(10)) | {14}
_RELEVANT = {
    ACCEPT_ALL: frozenset(),
    REJECT_ALL: frozenset(),
    EXAMPLE: EXAMPLE_PCRS,
    LIMELET_PCRS: BOOT_PCRS,
}


def check_policy_name(name: str) -> str:
    if name not in _RELEVANT:
        raise UnknownMbPolicyError(name)
    return name


def relevant_pcrs(name: str) -> frozenset[int]:
    """The PCRs the policy reads; all must be in the quote (empty: the policy reads none)."""
    return _RELEVANT[check_policy_name(name)]


def evaluate(name: str, refstate: Any, events: list[Any], replayed: Mapping[int, bytes]) -> str:
    """ "" to accept, else the reason; ``replayed`` holds the log's PCR values (quote's bank)."""
    check_policy_name(name)
    if name == ACCEPT_ALL:
        return ""
    if name == REJECT_ALL:
        return "reject all"
    try:
        if name == EXAMPLE:
            return evaluate_example(load_refstate(refstate), events)
        return _limelet_pcrs(refstate, replayed)
    except RefstateError as exc:
        return f"policy evaluation failed: {exc}"


def _limelet_pcrs(refstate: Any, replayed: Mapping[int, bytes]) -> str:
    reference = limelet_reference(refstate)
    if refstate.get("reject_all", False):
        return "the reference state rejects every boot"
    size = len(next(iter(replayed.values()))) if replayed else 0
    bad = [
        n
        for n, allowed in sorted(reference.items())
        if replayed.get(n, bytes(size)).hex() not in allowed
    ]
    return f"PCRs {bad} are not in the reference state" if bad else ""


def limelet_reference(refstate: Any) -> dict[int, frozenset[str]]:
    """``{"pcrs": ..., "reject_all": ...}`` checked: PCR number -> allowed lowercase values."""
    if not isinstance(refstate, dict) or not set(refstate) <= {"pcrs", "reject_all"}:
        raise RefstateError("expected an object with 'pcrs' and/or 'reject_all'")
    pcrs, reject = refstate.get("pcrs", {}), refstate.get("reject_all", False)
    if not isinstance(reject, bool) or not isinstance(pcrs, dict):
        raise RefstateError("'reject_all' must be a boolean and 'pcrs' an object")
    out: dict[int, frozenset[str]] = {}
    for key, values in pcrs.items():
        if not (key.isdigit() and int(key) in BOOT_PCRS):
            raise RefstateError(f"'pcrs' key {key[:8]!r} is not a measured-boot PCR")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RefstateError(f"'pcrs' {key}: expected a list of hex strings")
        out[int(key)] = frozenset(v.lower() for v in values)
    return out
