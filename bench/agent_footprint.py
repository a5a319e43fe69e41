"""How heavy is limelet-agent, next to rust-keylime 0.2.9 and Keylime 6.6.0's Python agent?

``python -m bench.agent_footprint [--seconds 60] [--starts 15] [--skip-keylime66]
[--skip-rust] [--keep]``

rust-keylime 0.2.9 (the reference agent most fleets run; ../shared/peers) is measured in the
same run the same way (bench.rust_footprint), with limelet's ratios to it.

Each agent runs as the program a device runs, on its own swtpm (TCP TCTI), registering with
one ``limelet-registrar`` subprocess; the verifier's side is a test CA whose client
certificate both agents trust.  Measured per agent:

* start-to-serving: from spawning the process until ``GET /version`` answers over mTLS, over
  ``--starts`` restarts after a first start that made the keys (and, for limelet, wrote its
  bytecode: see footprint_support.limelet_env).  Registration with the registrar is part of
  every start, in both agents.  limelet keeps its AK; Keylime 6.6.0 makes a new AK at every
  start, which the registrar refuses for a known agent id, so its record is deleted first;
* peak RSS: VmHWM of the agent process (/proc/PID/status) after ``--seconds`` of one
  ``quotes/integrity`` request per second (Keylime 6.6.0 also runs tpm2-tools children,
  whose memory is not counted);
* quote latency: the median of those requests as ``curl`` over mTLS sees them
  (``time_total``: connection, TLS handshake, quote, transfer), and the part after the TLS
  handshake; and, as the floor of that method, the median of ``GET /version`` the same way.

limelet runs three times: with ``ek_handle = "generate"`` (the default: TPM2_CreatePrimary of
the RSA-2048 EK at every start), with ``ek_handle`` at swtpm's persistent EK, and that again
with ``MALLOC_ARENA_MAX=2`` in its environment.  limelet's certificate is pinned by curl;
Keylime 6.6.0 makes a new self-signed one at start, so curl skips server verification there
(the handshake costs the same).  Results go to bench/results/agent_footprint.json and stdout;
targets are recorded, never asserted.  Keylime 6.6.0 needs ``python -m
tools.keylime_agent66 ensure`` and tpm2-tools; when it cannot be measured the reason is
recorded instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.footprint_support import (
    LIBRARY_FLOOR_IMPORTS,
    QUOTE_MASK,
    READY_TIMEOUT_S,
    SCRIPTS,
    SWTPM_RSA_EK_HANDLE,
    AgentSpec,
    Registrar,
    Verifier,
    curl_get,
    curl_quote,
    curl_url,
    keylime66_spec,
    library_floor_mb,
    limelet_env,
    limelet_spec,
    make_verifier,
    openssl_server,
    started,
)
from bench.rust_footprint import RUST_TARGET_RATIOS, against_rust, measure_rust
from tools import keylime_agent66
from tools.demo_registration import LOOPBACK, _free_port, running, write_pki, write_registrar_config
from tools.procfs import peak_rss_mb
from tools.swtpm import Swtpm, SwtpmState, manufacture

RESULTS = Path(__file__).parent / "results" / "agent_footprint.json"
DEFAULT_SECONDS = 60
DEFAULT_STARTS = 15
TARGETS = {"peak_rss_mb": 36.0, "start_to_serving_s": 0.5, "median_quote_ms": 11.0}
# The issue derives the absolute targets from Keylime 6.6.0's agent measured on its machine:
# "peak RSS at most half of that", "median quote latency at most a quarter".
RELATIVE_TARGETS = {"peak_rss_ratio": 0.5, "median_quote_ratio": 0.25}
VERSION_PROBES = 10
FLOOR_PROBES = 20
# (result key, ek_handle, environment added to limelet's)
LIMELET_RUNS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("limelet", "generate", {}),
    ("limelet_persistent_ek", SWTPM_RSA_EK_HANDLE, {}),
    ("limelet_persistent_ek_malloc_arena_max_2", SWTPM_RSA_EK_HANDLE, {"MALLOC_ARENA_MAX": "2"}),
)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _start_times(spec: AgentSpec, verifier: Verifier, starts: int) -> list[float]:
    times = []
    for n in range(starts):
        with started(spec, verifier, spec.cwd / f"start-{n}.log") as (_, seconds):
            times.append(seconds)
    return times


def measure_agent(spec: AgentSpec, verifier: Verifier, seconds: int, starts: int) -> dict[str, Any]:
    with started(spec, verifier, spec.cwd / "first-start.log") as (_, first_s):
        pass
    times = _start_times(spec, verifier, starts - 1)
    with started(spec, verifier, spec.cwd / "measured-start.log") as (pid, last_s):
        times.append(last_s)
        samples = []
        for _ in range(seconds):
            tick = time.monotonic()
            samples.append(curl_quote(spec, verifier))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        versions = [curl_get(spec, verifier, "/version")[0] for _ in range(VERSION_PROBES)]
        peak_mb = peak_rss_mb(pid)
    totals = [total for total, _ in samples]
    return {
        "start_to_serving_s": round(statistics.median(times), 3),
        "start_to_serving_s_min_max": [round(min(times), 3), round(max(times), 3)],
        "starts": len(times),
        "first_start_to_serving_s": round(first_s, 3),
        "peak_rss_mb": peak_mb,
        "median_quote_ms": _ms(statistics.median(totals)),
        "median_quote_after_tls_handshake_ms": _ms(statistics.median(a for _, a in samples)),
        "quote_ms_min_max": [_ms(min(totals)), _ms(max(totals))],
        "quotes": len(samples),
        "median_version_ms": _ms(statistics.median(versions)),
    }


def measure(
    seconds: int, starts: int, with_keylime66: bool, keep: bool, with_rust: bool = True
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="limelet-bench-agent-") as tmp:
        work = Path(tempfile.mkdtemp(prefix="limelet-bench-agent-")) if keep else Path(tmp)
        print(f"working in {work}", file=sys.stderr)
        template = manufacture(work / "tpm-template")
        registrar = Registrar(_free_port(), _free_port(), work / "cv_ca")
        write_pki(registrar.tls_dir)
        reg_conf = write_registrar_config(work, template.ca_dir, registrar.port, registrar.tls_port)
        reg_log = work / "registrar.log"
        argv = [str(SCRIPTS / "limelet-registrar"), "-c", str(reg_conf)]
        with running(argv, dict(os.environ), reg_log):
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not registrar.up():
                if time.monotonic() > deadline:
                    raise SystemExit(f"registrar did not start:\n{reg_log.read_text()}")
                time.sleep(0.1)
            verifier = make_verifier(work)
            args = (work, template, registrar, verifier, seconds, starts)
            results = {key: _limelet(key, ek, env, *args) for key, ek, env in LIMELET_RUNS}
            if with_rust:
                results["rust_keylime_0.2.9_agent"] = measure_rust(*args, measure_agent)
            else:
                results["rust_keylime_0.2.9_agent"] = {"not measured": "--skip-rust"}
            if with_keylime66:
                results["keylime_6.6.0_agent"] = _keylime66(*args)
            else:
                results["keylime_6.6.0_agent"] = {"not measured": "--skip-keylime66"}
            results["floors"] = _floors(work / LIMELET_RUNS[0][0] / "data", verifier)
    return results


def _floors(agent_data: Path, verifier: Verifier) -> dict[str, Any]:
    """What no agent on this machine, measured this way, can go below.

    * the agent's libraries imported into a bare python (peak RSS);
    * curl over mTLS against ``openssl s_server`` holding the agent's certificate and key
      (a C server that answers at once): the measuring client's own share of each latency,
      process start-up excluded as for the agents.  A quote adds the TPM's signature to it
      (bench/results/tpm_quote.json).
    """
    cert, key = agent_data / "server-cert.crt", agent_data / "server-private.pem"
    with openssl_server(cert, key, verifier.ca) as port:
        url = f"https://{LOOPBACK}:{port}/"
        samples = [curl_url(url, cert, verifier) for _ in range(FLOOR_PROBES)]
    totals = [total for total, _ in samples]
    return {
        "library_rss_mb": library_floor_mb(),
        "library_imports": LIBRARY_FLOOR_IMPORTS.strip().splitlines(),
        "curl_mtls_openssl_s_server_median_ms": _ms(statistics.median(totals)),
        "curl_mtls_openssl_s_server_after_handshake_median_ms": _ms(
            statistics.median(after for _, after in samples)
        ),
        "probes": FLOOR_PROBES,
    }


def _relative(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets as it states them: against Keylime 6.6.0's agent in the same run."""
    theirs = results.get("keylime_6.6.0_agent", {})
    if "peak_rss_mb" not in theirs:
        return {"not measured": "Keylime 6.6.0's agent was not measured in this run"}
    out: dict[str, Any] = {}
    for key, _ek, _env in LIMELET_RUNS:
        ours = results[key]
        rss = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
        quote = ours["median_quote_ms"] / theirs["median_quote_ms"]
        start = ours["start_to_serving_s"] / theirs["start_to_serving_s"]
        out[key] = {
            "peak_rss_ratio": round(rss, 3),
            "median_quote_ratio": round(quote, 3),
            "start_to_serving_ratio": round(start, 3),
            "meets": {
                "peak_rss_at_most_half": rss <= RELATIVE_TARGETS["peak_rss_ratio"],
                "median_quote_at_most_a_quarter": quote <= RELATIVE_TARGETS["median_quote_ratio"],
            },
        }
    return out


def _limelet(
    key: str, ek_handle: str, extra: dict[str, str], work: Path, template: SwtpmState,
    registrar: Registrar, verifier: Verifier, seconds: int, starts: int,
) -> dict[str, Any]:  # fmt: skip
    agent_dir = work / key
    agent_dir.mkdir()
    with Swtpm(template, work / f"tpm-{key}") as tpm:
        env = limelet_env(agent_dir, extra)
        # One id per run: each run's swtpm makes its own AK, which the registrar would
        # refuse for an id it knows with another.
        agent_id = f"bench-agent-{len(list(work.glob('tpm-*')))}"
        spec = limelet_spec(
            agent_dir, tpm.tcti, registrar.port, verifier, agent_id=agent_id,
            ek_handle=ek_handle, env=env,
        )  # fmt: skip
        result = measure_agent(spec, verifier, seconds, starts)
    return {"ek_handle": ek_handle, "added_environment": extra, **result}


def _keylime66(
    work: Path, template: SwtpmState, registrar: Registrar, verifier: Verifier, seconds: int,
    starts: int,
) -> dict[str, Any]:  # fmt: skip
    agent_dir = work / "keylime66"
    agent_dir.mkdir()
    with Swtpm(template, work / "tpm-keylime66") as tpm:
        try:
            keylime_agent66.ensure()
            spec = keylime66_spec(agent_dir, tpm.tcti, registrar, verifier)
            return {"ek_handle": "generate", **measure_agent(spec, verifier, seconds, starts)}
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            return {"not measured": f"{type(exc).__name__}: {str(exc)[-500:]}"}


def _environment(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tpm2_pytss": metadata.version("tpm2-pytss"),
        "tpm2_pytss_links_fapi": _pytss_links_fapi(),
        "cryptography": metadata.version("cryptography"),
        "h11": metadata.version("h11"),
        "trio": metadata.version("trio"),
        "tcti": "swtpm over TCP on loopback (tpm2-pytss swtpm TCTI)",
        "limelet_bytecode": "compiled by the first start (PYTHONPYCACHEPREFIX), as packages ship",
        "malloc_arena_max": "glibc default unless the run says otherwise",
        "note": (
            "the machine is shared with other work: latencies vary between runs; compare "
            "runs within one file"
        ),
    }


def _pytss_links_fapi() -> bool:
    """scripts/setup builds tpm2-pytss without FAPI; a distribution's build usually links it
    (and with it libcurl, GnuTLS, LDAP, Kerberos: ~4 MB more in the agent)."""
    from tpm2_pytss import _libtpm2_pytss

    ldd = subprocess.run(["ldd", _libtpm2_pytss.__file__], capture_output=True, text=True)
    return "libtss2-fapi" in ldd.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    parser.add_argument("--starts", type=int, default=DEFAULT_STARTS, help="measured starts")
    parser.add_argument("--skip-keylime66", action="store_true")
    parser.add_argument("--skip-rust", action="store_true", help="do not measure rust-keylime")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = measure(
        args.seconds, max(1, args.starts), not args.skip_keylime66, args.keep, not args.skip_rust
    )
    report = {
        "benchmark": "agent_footprint",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": (
            "each agent a subprocess on its own swtpm, one limelet-registrar subprocess; "
            f"quotes/integrity mask {QUOTE_MASK} partial=1 once a second by curl over mTLS "
            "(limelet's certificate pinned, 6.6.0's not verified); RSS is VmHWM of the "
            "agent process; start-to-serving is the median of the measured starts"
        ),
        "environment": _environment(load_before),
        "seconds": args.seconds,
        "targets": TARGETS,
        "results": results,
        "limelet_meets_targets": {
            key: {name: results[key][name] <= target for name, target in TARGETS.items()}
            for key, _ek, _env in LIMELET_RUNS
        },
        "relative_targets": RELATIVE_TARGETS,
        "limelet_against_keylime66": _relative(results),
        "rust_keylime_target_ratios": RUST_TARGET_RATIOS,
        "limelet_against_rust_keylime": against_rust(results, [k for k, _e, _v in LIMELET_RUNS]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
