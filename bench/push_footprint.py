"""How much lighter is limelet-agent in push mode than the same agent in pull mode?

``python -m bench.push_footprint [--seconds 60] [--keep]``

Both runs use the real Keylime 7.14.3 (tools.keylime_services): a push-mode verifier for
the push agent, a pull-mode verifier for the pull agent (Keylime's ``mode`` is global), each
with its registrar and ``quote_interval = 1``, and each agent on its own swtpm, enrolled by
the real ``keylime_tenant`` with the same tpm_policy (PCR 23 all zeros), no IMA log.  The
agent is the program a device runs (``python -m edge_agent.cli``), with bytecode cached as an
installed package has it (bench.footprint_support.limelet_env: a first, unmeasured start
writes it).  Measured per agent, after
``--seconds`` of attestation:

* peak RSS: VmHWM of the agent process (/proc/PID/status);
* attestations the verifier counted in that time (``attestation_count``), so the two did
  comparable work;
* sockets: its listening TCP sockets (the pull agent's API; the push agent must have none).

Each mode runs as shipped and again with ``MALLOC_ARENA_MAX=2``.

The push agent loads no HTTP server, TLS server context, payload or revocation code.
Results go to bench/results/push_footprint.json and stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.footprint_support import limelet_env
from tools.keylime_services import KeylimeServices, free_port, get_json, start_keylime
from tools.procfs import peak_rss_mb
from tools.swtpm import Swtpm, SwtpmState, manufacture

RESULTS = Path(__file__).parent / "results" / "push_footprint.json"
DEFAULT_SECONDS = 60
QUOTE_INTERVAL_SECONDS = 1
TAMPER_FREE_POLICY = json.dumps({"23": ["0" * 64]})
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LISTEN_STATE = "0A"
AGENT_IDS = {"push": "limelet-bench-push", "pull": "limelet-bench-pull"}
# Each mode as shipped, and with glibc's malloc arenas capped at 2 (the agent's worker
# threads each get an arena otherwise; bench.agent_footprint measures the same switch).
ARENA_SUFFIX = "_malloc_arena_max_2"
RUNS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("push", "push", {}),
    ("pull", "pull", {}),
    ("push" + ARENA_SUFFIX, "push", {"MALLOC_ARENA_MAX": "2"}),
    ("pull" + ARENA_SUFFIX, "pull", {"MALLOC_ARENA_MAX": "2"}),
)


def _conf(work: Path, mode: str, tcti: str, keylime: KeylimeServices) -> Path:
    common = (
        "[agent]\n"
        f'uuid = "{AGENT_IDS[mode]}"\ntcti = "{tcti}"\nkeylime_dir = "{work / "data"}"\n'
        f'registrar_ip = "{keylime.registrar_ip}"\nregistrar_port = {keylime.registrar_port}\n'
        'run_as = ""\npayload_script = ""\n'
        f'ima_ml_path = "{work / "no-ima"}"\nmeasuredboot_ml_path = "{work / "no-boot-log"}"\n'
    )
    if mode == "push":
        extra = (
            f'push_model = true\nverifier_url = "{keylime.verifier_url}"\n'
            f'verifier_tls_ca_cert = "{keylime.ca_cert}"\n'
            f"attestation_interval_seconds = {QUOTE_INTERVAL_SECONDS}\n"
        )
    else:
        port = free_port()
        extra = (
            f'ip = "127.0.0.1"\nport = {port}\ncontact_ip = "127.0.0.1"\ncontact_port = {port}\n'
            f'trusted_client_ca = "{keylime.ca_cert}"\n'
        )
    path = work / "agent.conf"
    path.write_text(common + extra)
    return path


@contextmanager
def _agent(work: Path, conf: Path, extra: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    env = limelet_env(work, {"KEYLIME_AGENT_CONFIG": str(conf), **extra})
    env = {k: v for k, v in env.items() if not k.startswith("KEYLIME_") or k.endswith("_CONFIG")}
    env["KEYLIME_AGENT_CONFIG"] = str(conf)
    with (work / "agent.log").open("wb") as log:  # each start writes its own log
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=log, stderr=log
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_log(work: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    log = work / "agent.log"
    while log.read_text(errors="replace").count(text) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the agent did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def _record(keylime: KeylimeServices, agent_id: str, version: str) -> dict[str, Any]:
    status, body = get_json(
        keylime.verifier_ip, keylime.verifier_port, f"/v{version}/agents/{agent_id}",
        keylime.ssl_context(),
    )  # fmt: skip
    if status != 200:
        raise SystemExit(f"verifier answered {status}: {body}")
    record: dict[str, Any] = body["results"]
    return record


def _listening(pid: int) -> list[str]:
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in mine and cols[3] == LISTEN_STATE:
                found.append(f"{proto} {cols[1]}")
    return found


def measure_mode(
    key: str, mode: str, extra: dict[str, str], root: Path, template: SwtpmState, seconds: int
) -> dict[str, Any]:
    work = root / key
    work.mkdir()
    with (
        start_keylime(work / "keylime", mode=mode, quote_interval_seconds=QUOTE_INTERVAL_SECONDS)
        as keylime,
        Swtpm(template, work / "tpm") as tpm,
    ):  # fmt: skip
        conf = _conf(work, mode, tpm.tcti, keylime)
        # A first, unmeasured start makes the keys and writes the bytecode (an installed
        # package ships it; compiling would count in the peak), as bench.agent_footprint.
        with _agent(work, conf, extra) as process:
            _wait_log(work, "is up", process)
        with _agent(work, conf, extra) as process:
            _wait_log(work, "is up", process)
            agent_id = AGENT_IDS[mode]
            add = ["-c", "add", "-u", agent_id, "--tpm_policy", TAMPER_FREE_POLICY]
            if mode == "push":
                add.append("--push-model")
                version = "2.6"
            else:
                port = conf.read_text().split("\nport = ")[1].split("\n")[0]
                add += ["-t", "127.0.0.1", "-tp", port]
                _, body = get_json(keylime.verifier_ip, keylime.verifier_port, "/version",
                                   keylime.ssl_context())  # fmt: skip
                version = body["results"]["current_version"]
            done = keylime.run_tenant(*add)
            if done.returncode != 0:
                raise SystemExit(f"tenant add failed:\n{done.stdout}{done.stderr}")
            start_count = int(_record(keylime, agent_id, version)["attestation_count"])
            time.sleep(seconds)
            record = _record(keylime, agent_id, version)
            return {
                "peak_rss_mb": peak_rss_mb(process.pid),
                "attestations": int(record["attestation_count"]) - start_count,
                "seconds": seconds,
                "listening_sockets": _listening(process.pid),
                "verifier_status": record.get(
                    "attestation_status", record.get("operational_state")
                ),
            }


def measure(seconds: int, keep: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="limelet-bench-push-") as tmp:
        root = Path(tempfile.mkdtemp(prefix="limelet-bench-push-")) if keep else Path(tmp)
        print(f"working in {root}", file=sys.stderr)
        template = manufacture(root / "tpm-template")
        results = {
            key: measure_mode(key, mode, extra, root, template, seconds)
            for key, mode, extra in RUNS
        }
    for suffix in ("", ARENA_SUFFIX):
        push, pull = (
            results["push" + suffix]["peak_rss_mb"],
            results["pull" + suffix]["peak_rss_mb"],
        )
        results["push_vs_pull" + suffix] = {
            "peak_rss_saved_mb": round(pull - push, 2),
            "peak_rss_ratio": round(push / pull, 3),
            "peak_rss_lighter_percent": round(100 * (pull - push) / pull, 1),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push_footprint", description=__doc__)
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    results = measure(args.seconds, args.keep)
    out = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "keylime": "7.14.3 (verifier mode=push for the push agent, mode=pull for the pull one)",
        "quote_interval_seconds": QUOTE_INTERVAL_SECONDS,
        "results": results,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
