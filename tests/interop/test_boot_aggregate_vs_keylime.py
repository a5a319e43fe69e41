"""boot_aggregate candidates from a UEFI event log: ours and Keylime 7.14.3's agree.

Keylime (keylime/mba/elparsing/tpm2_tools_elparser.py) replays the log with tpm2_eventlog and
aggregates the replayed PCRs (``__add_boot_aggregate``); we replay the log ourselves
(attest_protocol/eventlog) and aggregate (attest_protocol/ima/boot_aggregate.py).  Two real
firmware logs from Keylime's repository (tests/interop/data/eventlogs/README.md):

* the aggregation itself: Keylime's ``__add_boot_aggregate`` fed our replayed PCRs gives our
  candidates, in every bank;
* the replay: PCRs 1-9 equal tpm2_eventlog's.  PCR 0 does too, except where the log has a
  StartupLocality event: the tpm2_eventlog 5.4 here extends that EV_NO_ACTION event into PCR 0
  instead of starting PCR 0 at the locality (TCG PFP 10.4.5.3), so its PCR 0, and the
  aggregates over it, match no real TPM; ours follow the specification.  For a log without
  that event the candidates are compared whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from attest_protocol.eventlog import parse_event_log, replay_boot_log
from attest_protocol.ima.boot_aggregate import boot_aggregates
from attest_protocol.policy import ImaState, evaluate, load_runtime_policy
from attest_protocol.tpm2.constants import TpmAlg
from tests.unit.test_runtime_policy import make_entry, pcr_after, policy_dict
from tools.keylime_snippets import run_in_keylime

pytestmark = pytest.mark.interop

LOGS = sorted((Path(__file__).parent / "data" / "eventlogs").glob("keylime-test-*"))
_NAMES = {TpmAlg.SHA1: "sha1", TpmAlg.SHA256: "sha256"}

_SNIPPET = """\
import base64
from keylime.mba.elparsing import tpm2_tools_elparser as elparser
failure, parsed = elparser.parse_binary_bootlog(base64.b64decode(payload["log"]))
assert not failure, failure.get_event_ids()
ours = {"pcrs": {alg: {n: int(v, 16) for n, v in pcrs.items()}
                 for alg, pcrs in payload["our_pcrs"].items()}}
getattr(elparser, "__add_boot_aggregate")(ours)
result = {
    "pcrs": {alg: {n: f"{v:x}" for n, v in pcrs.items()} for alg, pcrs in parsed["pcrs"].items()},
    "aggregates": parsed["boot_aggregates"],
    "aggregates_of_our_pcrs": ours["boot_aggregates"],
}
"""


def _flat(aggregates: dict[str, list[str]]) -> set[bytes]:
    return {bytes.fromhex(v) for values in aggregates.values() for v in values}


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_boot_aggregates_match_keylime(log: Path) -> None:
    data = log.read_bytes()
    parsed = parse_event_log(data)
    banks = [TpmAlg(a) for a in parsed.spec_id.digest_sizes if a in _NAMES]
    replayed = {alg: replay_boot_log(parsed.events, alg) for alg in banks}
    our_pcrs = {
        _NAMES[a]: {str(n): v.hex() for n, v in pcrs.items()} for a, pcrs in replayed.items()
    }
    payload: dict[str, Any] = {"log": base64.b64encode(data).decode(), "our_pcrs": our_pcrs}
    theirs = run_in_keylime(_SNIPPET, payload)
    ours = set(boot_aggregates(parsed.events, parsed.spec_id.digest_sizes))
    assert ours and ours == _flat(theirs["aggregates_of_our_pcrs"])
    has_locality = any(e.startup_locality is not None for e in parsed.events)
    for alg in banks:
        name = _NAMES[alg]
        for n in range(1, 10):
            assert int(theirs["pcrs"][name][str(n)], 16) == int(our_pcrs[name][str(n)], 16)
    if not has_locality:
        assert ours == _flat(theirs["aggregates"])


def test_ima_boot_aggregate_entry_is_judged_by_the_log() -> None:
    """The IMA boot_aggregate entry passes with the log's value, fails with any other."""
    parsed = parse_event_log(LOGS[0].read_bytes())
    candidates = boot_aggregates(parsed.events, (TpmAlg.SHA256,))
    policy = load_runtime_policy(json.dumps(policy_dict()).encode())
    for digest, ok in ((candidates[-1], True), (hashlib.sha256(b"other").digest(), False)):
        entry = make_entry(1, "boot_aggregate", digest)
        verdict = evaluate(
            policy, ImaState.initial(TpmAlg.SHA256), (entry,), pcr_after((entry,)),
            TpmAlg.SHA256, boot_aggregates=candidates,
        )  # fmt: skip
        assert verdict.ok is ok
