"""ima-sig verdicts with per-agent verification keys: ours and Keylime 7.14.3's agree.

The agent's ``ima_sign_verification_keys`` (tenant ``--sign_verification_key``) and the
runtime policy's ``verification-keys`` are combined as keylime/cloud_verifier_common.py
``process_quote_response`` chooses (the agent's keyring when it has one, else the policy's),
and the log is judged by Keylime's ``ima.process_measurement_list`` with that keyring; ours
by ``with_agent_keys`` plus the runtime-policy engine.  Verdicts and event ids must agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from attest_protocol.ima import format_ima_line
from attest_protocol.policy import ImaState, evaluate, load_runtime_policy
from tests.unit.test_runtime_policy import (
    BANK,
    allow,
    file_digest,
    ima_signature,
    make_entry,
    pcr_after,
    policy_dict,
    sample_keys,
    verification_keys,
)
from tools.keylime_snippets import run_in_keylime
from verifier_lite.ima_keys import with_agent_keys

pytestmark = pytest.mark.interop

# The keyring choice is process_quote_response's; the verdict is Keylime's own code.
_SNIPPET = """\
import json
from keylime.common.algorithms import Hash
from keylime.ima import file_signatures, ima
result = {}
for case in payload["cases"]:
    policy = case["policy"]
    chosen = case["agent_keys"] or policy["verification-keys"]
    keyrings = file_signatures.ImaKeyrings()
    keyrings.set_tenant_keyring(file_signatures.ImaKeyring.from_string(chosen))
    _, failure = ima.process_measurement_list(
        None, case["lines"], policy, pcrval=case["pcr"], ima_keyrings=keyrings,
        hash_alg=Hash.SHA256)
    result[case["name"]] = {"ok": not failure, "events": failure.get_event_ids()}
"""


def _cases() -> list[dict[str, Any]]:
    k = sample_keys()
    boot = make_entry(1, "boot_aggregate", bytes(32))
    digest = file_digest("signed")
    signed_by = {
        "rsa": make_entry(
            2, "/opt/s", digest, template="ima-sig", signature=ima_signature(k.rsa_key, digest)
        ),
        "ec": make_entry(
            2, "/opt/s", digest, template="ima-sig", signature=ima_signature(k.ec_key, digest)
        ),
    }
    good, wrong = verification_keys(k.rsa_key, k.ec_key), verification_keys(k.other)
    rows = [
        ("agent key only", "rsa", "", good),
        ("agent ec key only", "ec", "", good),
        ("policy key only", "rsa", good, ""),
        ("agent key replaces a wrong policy key", "rsa", wrong, good),
        ("wrong agent key replaces the right policy key", "rsa", good, wrong),
        ("no key anywhere", "ec", "", ""),
        ("agent keyring 'null'", "rsa", good, "null"),
    ]
    cases = []
    for name, signer, policy_keys, agent_keys in rows:
        entries = (boot, signed_by[signer])
        policy = policy_dict(digests=allow(boot), **{"verification-keys": policy_keys})
        cases.append(
            {
                "name": name,
                "entries": entries,
                "policy": policy,
                "agent_keys": agent_keys,
                "lines": [format_ima_line(e) for e in entries],
                "pcr": pcr_after(entries).hex(),
            }
        )
    return cases


def test_agent_keys_verdicts_match_keylime() -> None:
    cases = _cases()
    wire = [{k: v for k, v in c.items() if k != "entries"} for c in cases]
    theirs = run_in_keylime(_SNIPPET, {"cases": wire})
    for case in cases:
        policy = with_agent_keys(
            load_runtime_policy(json.dumps(case["policy"]).encode()), case["agent_keys"]
        )
        verdict = evaluate(
            policy, ImaState.initial(BANK), case["entries"], bytes.fromhex(case["pcr"]), BANK
        )
        ours = {"ok": verdict.ok, "events": [f.keylime_event_id for f in verdict.failures]}
        assert ours == theirs[case["name"]], case["name"]
    assert theirs["agent key only"]["ok"] and not theirs["no key anywhere"]["ok"]
    assert not theirs["wrong agent key replaces the right policy key"]["ok"]
