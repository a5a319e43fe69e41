"""Runtime-policy evaluation speed: ours vs Keylime 7.14.3.  ``python -m bench.ima_policy``.

One generated IMA log (``--n`` entries, default 100,000: ima-ng, SHA-1 template hashes, SHA-256
file digests, 1 % of paths under an excluded directory) and a policy that allows every other
entry.  Measured on the same ASCII lines and quoted PCR 10 (sha256 bank):

* ours: ``evaluate_log`` on the text (the headline), and ``parse_ima_log`` + ``evaluate``
  (each part alone and together), best of ``--runs``;
* Keylime: ``keylime.ima.ima.process_measurement_list`` (which parses as it goes) in Keylime's
  own virtualenv via tools/keylime_snippets.py, timed inside that process, best of ``--runs``.

Results go to bench/results/ima_policy.json and stdout.  The target is >= 3x Keylime's rate.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from attest_protocol.ima import ImaEntry, format_ima_line, parse_ima_log, replay_pcr10
from attest_protocol.policy import ImaState, evaluate, evaluate_log, load_runtime_policy
from attest_protocol.tpm2.constants import TpmAlg
from tools.keylime_snippets import run_in_keylime

DEFAULT_ENTRIES = 100_000
DEFAULT_RUNS = 3
TARGET_SPEEDUP = 3.0
EXCLUDED_EVERY = 100  # one path in this many lives under EXCLUDED_DIR, which is excluded
EXCLUDED_DIR = "/tmp/"  # noqa: S108 (a path named in the log, never opened)
KEYLIME_TIMEOUT_SECONDS = 1800.0
BANK = TpmAlg.SHA256
RESULTS = Path(__file__).parent / "results" / "ima_policy.json"

_KEYLIME = """\
import time
from keylime.common.algorithms import Hash
from keylime.ima import file_signatures, ima
best = None
for _ in range(payload["runs"]):
    start = time.perf_counter()
    _, failure = ima.process_measurement_list(
        None, payload["lines"], payload["policy"], pcrval=payload["pcr"],
        ima_keyrings=file_signatures.ImaKeyrings(), hash_alg=Hash.SHA256)
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
result = {"seconds": best, "ok": not failure, "events": len(failure.events)}
"""


def generate(count: int) -> tuple[str, dict[str, Any], bytes]:
    """The log text, the policy (as JSON data) and PCR 10 after the whole log."""
    entries = []
    digests: dict[str, list[str]] = {}
    for i in range(count):
        path = (
            f"{EXCLUDED_DIR}t{i}" if i % EXCLUDED_EVERY == 0 else f"/usr/lib/pkg{i % 97}/file{i}.so"
        )
        digest = hashlib.sha256(path.encode()).digest()
        draft = ImaEntry(i + 1, 10, bytes(20), "ima-ng", "sha256", digest, path)
        template_hash = hashlib.sha1(draft.template_data()).digest()  # noqa: S324 (kernel's)
        entries.append(ImaEntry(i + 1, 10, template_hash, "ima-ng", "sha256", digest, path))
        if not path.startswith(EXCLUDED_DIR):
            digests[path] = [digest.hex()]
    policy = {
        "meta": {"version": 1, "generator": 0},
        "release": 0,
        "digests": digests,
        "excludes": [f"{EXCLUDED_DIR}.*", "/var/log/.*"],
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
        "ima-buf": {},
        "verification-keys": "",
    }
    text = "".join(format_ima_line(e) + "\n" for e in entries)
    return text, policy, replay_pcr10(entries, BANK)


def _best(runs: int, fn: Any) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def measure_ours(text: str, policy_json: dict[str, Any], pcr: bytes, runs: int) -> dict[str, Any]:
    policy = load_runtime_policy(json.dumps(policy_json).encode())
    state = ImaState.initial(BANK)
    parse_s, entries = _best(runs, lambda: parse_ima_log(text))
    eval_s, verdict = _best(runs, lambda: evaluate(policy, state, entries, pcr, BANK))
    both_s, _ = _best(runs, lambda: evaluate(policy, state, parse_ima_log(text), pcr, BANK))
    text_s, from_text = _best(runs, lambda: evaluate_log(policy, state, text, pcr, BANK))
    return {
        "ok": verdict.ok and from_text.ok,
        "parse_s": parse_s,
        "evaluate_entries_s": eval_s,
        "parse_and_evaluate_s": both_s,
        "evaluate_log_s": text_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    args = parser.parse_args()
    text, policy_json, pcr = generate(args.n)
    ours = measure_ours(text, policy_json, pcr, args.runs)
    payload = {
        "lines": text.splitlines(),
        "policy": policy_json,
        "pcr": pcr.hex(),
        "runs": args.runs,
    }
    theirs = run_in_keylime(_KEYLIME, payload, timeout=KEYLIME_TIMEOUT_SECONDS)
    ours_rate = args.n / ours["evaluate_log_s"]
    keylime_rate = args.n / theirs["seconds"]
    report = {
        "benchmark": "ima_policy",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "entries": args.n,
        "runs": args.runs,
        "ours": {**ours, "entries_per_s": round(ours_rate)},
        "keylime": {**theirs, "entries_per_s": round(keylime_rate)},
        "speedup": round(ours_rate / keylime_rate, 2),
        "target_speedup": TARGET_SPEEDUP,
    }
    text_out = json.dumps(report, indent=2) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text_out)
    print(text_out, end="")


if __name__ == "__main__":
    main()
