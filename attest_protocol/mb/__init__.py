"""Measured-boot policies as Keylime's verifier applies them (keylime/mba/elchecking).

Pure: a policy name, a reference state (parsed JSON) and the described boot events
(attest_protocol.eventlog.describe) in, "" or the reason for rejection out::

    POLICY_NAMES                              accept-all, reject-all, example, limelet-pcrs
    relevant_pcrs(name) -> frozenset[int]     PCRs the policy reads (empty: no restriction)
    evaluate(name, refstate, events, replayed) -> str
    load_refstate(doc) -> Refstate            the ``example`` reference state, checked

Errors::

    AttestProtocolError
    └── MbPolicyError
        ├── RefstateError           the reference state does not suit the policy
        └── UnknownMbPolicyError    no policy of that name
"""

from __future__ import annotations

from attest_protocol.mb.errors import MbPolicyError, RefstateError, UnknownMbPolicyError
from attest_protocol.mb.example import evaluate_example
from attest_protocol.mb.policies import (
    ACCEPT_ALL,
    EXAMPLE,
    LIMELET_PCRS,
    POLICY_NAMES,
    REJECT_ALL,
    check_policy_name,
    evaluate,
    relevant_pcrs,
)
from attest_protocol.mb.refstate import Refstate, load_refstate

__all__ = [
    "ACCEPT_ALL",
    "EXAMPLE",
    "LIMELET_PCRS",
    "POLICY_NAMES",
    "REJECT_ALL",
    "MbPolicyError",
    "Refstate",
    "RefstateError",
    "UnknownMbPolicyError",
    "check_policy_name",
    "evaluate",
    "evaluate_example",
    "load_refstate",
    "relevant_pcrs",
]
