"""What does our TPM layer add to a quote?  ``python -m bench.tpm_quote [--n 50]``.

On a fresh swtpm (tools/swtpm.py), for an RSA and an ECC AK, this measures the median of N:

* raw: one tpm2-pytss ``ESAPI.quote`` with the AK over sha256 PCRs 0, 10, 16 — nothing else;
* layer: ``PytssTpm.quote`` with the same AK and mask, which also hops to a worker thread,
  reads the quoted PCRs back (TPM2_PCR_Read), checks them against pcrDigest and builds the
  Keylime quote with its tpm2-tools PCR blob.

The AK is created once by the layer and persisted; the raw loop loads that same AK from the
AK file.  swtpm serves one connection at a time, so the two loops run one after the other.
Results go to bench/results/tpm_quote.json and stdout.  The target is an overhead < 5 ms.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from tpm2_pytss import TPM2_ALG, TPM2B_DATA, TPML_PCR_SELECTION, TPMT_SIG_SCHEME

from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.pcr import PcrSelection
from edge_agent.tpm import ak_store, esys_ops, templates
from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.pytss_backend import PytssTpm
from tools.swtpm import Swtpm, manufacture

DEFAULT_RUNS = 50
WARMUP_RUNS = 5
TARGET_OVERHEAD_MS = 5.0
MASK = 0x10401  # PCRs 0, 10, 16
NONCE = b"Xq7rT2mZp9LkV4sB8nWc"
FLAVOURS = {"rsa": "rsassa", "ecc": "ecdsa"}
RESULTS = Path(__file__).parent / "results" / "tpm_quote.json"


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def raw_quote_median(cfg: TpmConfig, runs: int) -> float:
    """Median seconds of a bare ESAPI quote with the AK stored in ``cfg.data_dir``."""
    esys, _vendor = esys_ops.open_esapi(cfg.tcti)
    try:
        chunk = esys_ops.nv_buffer_max(esys)
        template = templates.ek_template(
            cfg.encryption_alg, lambda i: esys_ops.nv_read(esys, i, chunk)
        )
        ek, ek_public = esys_ops.create_primary_ek(esys, template)
        want = ak_store.StoredAk(
            b"", b"", cfg.encryption_alg, cfg.hash_alg, cfg.signing_alg,
            ak_store.ek_fingerprint(ek_public),
        )  # fmt: skip
        stored = ak_store.load(cfg.ak_path, want=want)
        ak = esys_ops.load_ak(esys, ek, stored.private, stored.public)
        marshalled = PcrSelection.from_mask(MASK, TpmAlg.SHA256).encode()
        selection, _ = TPML_PCR_SELECTION.unmarshal(marshalled)
        nonce, scheme = TPM2B_DATA(NONCE), TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
        samples = []
        for i in range(WARMUP_RUNS + runs):
            start = time.perf_counter()
            esys.quote(ak, selection, nonce, scheme)
            if i >= WARMUP_RUNS:
                samples.append(time.perf_counter() - start)
        esys.flush_context(ak)
        esys.flush_context(ek)
    finally:
        esys.close()
    return _median_ms(samples)


async def layer_quote_median(cfg: TpmConfig, runs: int) -> float:
    """Median seconds of ``PytssTpm.quote`` (the AK is created and stored on first open)."""
    tpm = await PytssTpm.open(cfg)
    try:
        await tpm.ak()
        samples = []
        for i in range(WARMUP_RUNS + runs):
            start = time.perf_counter()
            await tpm.quote(NONCE, MASK)
            if i >= WARMUP_RUNS:
                samples.append(time.perf_counter() - start)
    finally:
        await tpm.aclose()
    return _median_ms(samples)


async def _prepare_ak(cfg: TpmConfig) -> None:
    tpm = await PytssTpm.open(cfg)
    try:
        await tpm.ak()
    finally:
        await tpm.aclose()


def measure(workdir: Path, runs: int) -> dict[str, Any]:
    template = manufacture(workdir / "template")
    results: dict[str, Any] = {}
    with Swtpm(template, workdir / "run") as swtpm:
        for flavour, signing_alg in FLAVOURS.items():
            cfg = TpmConfig(
                tcti=swtpm.tcti,
                encryption_alg=flavour,
                signing_alg=signing_alg,
                data_dir=workdir / flavour,
            )
            trio.run(_prepare_ak, cfg)
            raw = raw_quote_median(cfg, runs)
            layer = trio.run(layer_quote_median, cfg, runs)
            results[flavour] = {
                "raw_esapi_quote_median_ms": raw,
                "limelet_quote_median_ms": layer,
                "overhead_ms": round(layer - raw, 3),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_RUNS, help="measured runs per loop")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="limelet-bench-") as tmp:
        results = measure(Path(tmp), args.n)
    report = {
        "benchmark": "tpm_quote",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "n": args.n,
        "warmup": WARMUP_RUNS,
        "tpm": "swtpm via tools/swtpm.py, TCTI swtpm (TCP loopback)",
        "mask": f"{MASK:#x}",
        "hash_alg": "sha256",
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    args.output.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
