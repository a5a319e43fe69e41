"""verifier_lite's cost per push attestation.  ``python -m bench.push_verifier``.

In one process, on SQLite (a temporary directory): verifier_lite's app (``create_app``,
through Quart's test client, so no TLS or sockets are counted) and the software push agent of
tests/verifier/push_client.py (an RSA-2048 AK).  Timed, best of ``--runs``:

* a session: ``POST /v3.0/sessions`` + ``PATCH`` with the proof (the verifier checks a
  TPM2_Certify and writes the session's hash);
* an attestation round: ``POST .../attestations`` + ``PATCH`` with a quote and ``--entries``
  new IMA lines, judged by checks.check_evidence and recorded in the store;

``--rounds`` rounds per run, the verifier's clock moved past ``quote_interval`` between them.
The agent's own signing is timed apart and subtracted.  Results go to
bench/results/push_verifier.json and stdout.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.verifier.push_client import PushClient, SoftTpm, b64
from tests.verifier.support import add_body, runtime_policy_json
from verifier_lite.app import create_app
from verifier_lite.config import VerifierConfig
from verifier_lite.engine import Engine, EngineSettings
from verifier_lite.push.routes import EXTENSION, PushState
from verifier_lite.service import Verifier
from verifier_lite.store import SqliteVerifierStore

RESULTS = Path(__file__).parent / "results" / "push_verifier.json"
AGENT = "bench-push-agent"
QUOTE_INTERVAL = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _run(rounds: int, entries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteVerifierStore.open(Path(tmp) / "cv.sqlite")
        try:
            return await _measure(store, rounds, entries)
        finally:
            await store.aclose()


async def _measure(store: Any, rounds: int, entries: int) -> dict[str, float]:
    config = VerifierConfig(quote_interval=QUOTE_INTERVAL)
    engine = Engine(store, EngineSettings(QUOTE_INTERVAL, 1.0, False, 1), lambda a: None)  # type: ignore[arg-type,return-value]
    app = create_app(Verifier(store, engine, config), max_body_bytes=64 << 20)
    state: PushState = app.extensions[EXTENSION]
    clock = Clock()
    state.clock = state.sessions.clock = state.flow.clock = clock
    client = app.test_client()
    tpm = SoftTpm(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    files = {f"/usr/bin/bench-{i}": f"program {i}".encode() for i in range(entries * rounds + 1)}
    digests = {p: [hashlib.sha256(c).hexdigest()] for p, c in files.items()}
    body = add_body(ak_tpm=b"", mtls_cert=None, port=1)
    body.update(ak_tpm=tpm.ak_b64, cloudagent_ip=None, cloudagent_port=None)
    body.update(tpm_policy=json.dumps({"23": ["00" * 32]}))
    body["runtime_policy"] = b64(runtime_policy_json(digests).encode())
    _expect((await client.post(f"/v2.1/agents/{AGENT}", json=body)).status_code == 200, "enrol")

    async def send(method: str, path: str, doc: Any, headers: Any) -> tuple[int, Any, Any]:
        raw: Any = client
        response = await raw.open(path, method=method, data=json.dumps(doc), headers=dict(headers))
        text = await response.get_data(as_text=True)
        return (
            response.status_code,
            json.loads(text) if text else None,
            response.headers.get("Location"),
        )

    push = PushClient(send, AGENT, tpm)
    paths = iter(files.items())
    tpm.measure(*next(paths))
    started = time.perf_counter()
    _expect(await push.authenticate() == 200, "session")
    session_s = time.perf_counter() - started
    took = []
    for _ in range(rounds):
        for _ in range(entries):
            tpm.measure(*next(paths))
        clock.now += QUOTE_INTERVAL + 0.1
        started = time.perf_counter()
        status, doc = await push.attest()
        took.append(time.perf_counter() - started)
        _expect(status == 202 and doc["data"]["attributes"]["evaluation"] == "pass", str(doc))
    started = time.perf_counter()
    for _ in range(rounds):
        tpm.quote(bytes(16), [10, 23])
    agent_sign_s = (time.perf_counter() - started) / rounds
    return {
        "session_s": session_s - tpm_sign_seconds(tpm),
        "round_s": min(took) - agent_sign_s,
        "round_median_s": sorted(took)[len(took) // 2] - agent_sign_s,
        "agent_sign_s": agent_sign_s,
    }


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"push bench failed: {what}")


def tpm_sign_seconds(tpm: SoftTpm) -> float:
    started = time.perf_counter()
    tpm.certify(bytes(16))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--entries", type=int, default=10, help="new IMA lines per round")
    args = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.runs):
        result = trio.run(_run, args.rounds, args.entries)
        best = {k: min(v, best.get(k, v)) for k, v in result.items()}
    out = {
        "benchmark": "push_verifier",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "runs": args.runs,
        "rounds": args.rounds,
        "ima_entries_per_round": args.entries,
        **{k: round(v, 6) for k, v in best.items()},
        "rounds_per_s": round(1 / best["round_s"], 1),
    }
    text = json.dumps(out, indent=2) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
