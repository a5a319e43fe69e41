"""rust-keylime 0.2.9 in bench.agent_footprint: its spec, and limelet's ratios against it.

The reference agent (``../shared/peers/rust-keylime-0.2.9``, the pull agent) runs from its
shipped agent.conf with only this run's paths, ports and uuid changed, on its own swtpm, with
the benchmark's verifier CA as ``trusted_client_ca``.  It keeps its AK in agent_data.json
across restarts, as limelet does, so the registrar accepts every re-registration.  After a
stop swtpm still holds the agent's transient objects (no resource manager): they are flushed
before each start (the peer's README), outside the timed part.

Targets for limelet in the same run (the issue): peak RSS at most 1.9x rust-keylime's,
restart-to-serving at most 2x, median quote latency at most 1x.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from bench.footprint_support import AgentSpec, Registrar, Verifier
from tools.demo_registration import _free_port
from tools.swtpm import Swtpm, SwtpmState

__all__ = ["RUST_AGENT_DIR", "RUST_TARGET_RATIOS", "against_rust", "measure_rust", "rust_spec"]

Measure = Callable[[AgentSpec, Verifier, int, int], dict[str, Any]]

# ../shared/peers beside the repository, as tests/rust_keylime/support.py finds it.
RUST_AGENT_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers" / "rust-keylime-0.2.9"
RUST_ID = "bench-rust-keylime-0.2.9"
RUST_TARGET_RATIOS = {
    "peak_rss_ratio": 1.9,
    "start_to_serving_ratio": 2.0,
    "median_quote_ratio": 1.0,
}
FLUSH_TIMEOUT_S = 30


def _flush(tcti: str) -> None:
    subprocess.run(
        ["tpm2_flushcontext", "-t"],
        env={**os.environ, "TPM2TOOLS_TCTI": tcti},
        check=True,
        capture_output=True,
        timeout=FLUSH_TIMEOUT_S,
    )


def rust_spec(work: Path, tcti: str, registrar: Registrar, verifier: Verifier) -> AgentSpec:
    """The rust agent with its shipped agent.conf; raises FileNotFoundError without the peer."""
    shipped = (RUST_AGENT_DIR / "keylime-agent.conf").read_text()
    data, port = work / "data", _free_port()
    data.mkdir(parents=True)
    changes = {
        'keylime_dir = "/var/lib/keylime"': f'keylime_dir = "{data}"',
        'run_as = "keylime:tss"': 'run_as = ""',
        'uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"': f'uuid = "{RUST_ID}"',
        "registrar_port = 8890": f"registrar_port = {registrar.port}",
        "\nport = 9002": f"\nport = {port}",
        "contact_port = 9002": f"contact_port = {port}",
        'trusted_client_ca = "default"': f'trusted_client_ca = "{verifier.ca}"',
    }
    for old, new in changes.items():
        if old not in shipped:
            raise RuntimeError(f"rust-keylime's shipped conf has no {old!r}")
        shipped = shipped.replace(old, new)
    conf = work / "agent.conf"
    conf.write_text(shipped, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TCTI": tcti,
        "KEYLIME_AGENT_CONFIG": str(conf),
        "RUST_LOG": "info",
    }
    argv = [str(RUST_AGENT_DIR / "keylime_agent")]
    # cwd is keylime_dir, so the benchmark's unmount of cwd/secure meets the agent's tmpfs.
    return AgentSpec(
        "rust-keylime-0.2.9", argv, env, data, port, data / "server-cert.crt",
        functools.partial(_flush, tcti),
    )  # fmt: skip


def measure_rust(
    work: Path, template: SwtpmState, registrar: Registrar, verifier: Verifier, seconds: int,
    starts: int, measure: Measure,
) -> dict[str, Any]:  # fmt: skip
    """rust-keylime's figures (``measure`` is bench.agent_footprint.measure_agent), or why not."""
    with Swtpm(template, work / "tpm-rust-keylime") as tpm:
        try:
            spec = rust_spec(work / "rust-keylime", tpm.tcti, registrar, verifier)
            return {"ek_handle": "generate", **measure(spec, verifier, seconds, starts)}
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            return {"not measured": f"{type(exc).__name__}: {str(exc)[-500:]}"}


def against_rust(results: dict[str, Any], limelet_runs: list[str]) -> dict[str, Any]:
    """Each limelet run's ratios to rust-keylime's figures of the same run."""
    theirs: Optional[dict[str, Any]] = results.get("rust_keylime_0.2.9_agent")
    if theirs is None or "peak_rss_mb" not in theirs:
        return {"not measured": "rust-keylime was not measured in this run"}
    out: dict[str, Any] = {}
    for key in limelet_runs:
        ours = results[key]
        ratios = {
            "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
            "start_to_serving_ratio": ours["start_to_serving_s"] / theirs["start_to_serving_s"],
            "median_quote_ratio": ours["median_quote_ms"] / theirs["median_quote_ms"],
        }
        out[key] = {name: round(value, 3) for name, value in ratios.items()}
        out[key]["meets"] = {n: ratios[n] <= limit for n, limit in RUST_TARGET_RATIOS.items()}
    return out
