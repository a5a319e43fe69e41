"""``POST /v2.x/verify/evidence`` on real swtpm quotes: Keylime's request and answer shapes,
verdicts for good and bad evidence, 400 for bad requests, nothing stored - and the same
verdicts and failure ids as Keylime 7.14.3's ``process_verify_attestation`` on the same data.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from edge_agent.tpm.pytss_backend import PytssTpm
from tests.swtpm.support import config as tpm_config
from tests.verifier.support import API, RunningVerifier
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tools.keylime_snippets import run_in_keylime
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

NONCE = "Nq7rT2mZp9LkV4sB8nWc"
MASK = (1 << 10) | (1 << 23)
ZERO_PCR = "00" * 32


@pytest.fixture
async def data(swtpm: Swtpm, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """One real quote of PCRs 10 and 23 with its IMA log, as ``data`` members."""
    log = tmp_path / "ascii_runtime_measurements"
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    tpm = await PytssTpm.open(tpm_config(swtpm.tcti, tmp_path / "tpm"))
    try:
        ak = await tpm.ak()
        ek = await tpm.ek()
        quote = await tpm.quote(NONCE.encode(), MASK, ak.hash_alg)
        yield {
            "quote": quote.encode(),
            "nonce": NONCE,
            "hash_alg": ak.hash_alg,
            "tpm_ek": base64.b64encode(ek.public).decode(),
            "tpm_ak": base64.b64encode(ak.public).decode(),
            "tpm_policy": json.dumps({"23": [ZERO_PCR]}),
            "ima_measurement_list": log.read_text(),
        }
    finally:
        await tpm.aclose()


async def _post(verifier: RunningVerifier, body: Any) -> tuple[int, dict[str, Any]]:
    async with verifier.client() as client:
        response = await client.post(f"/{API}/verify/evidence", json=body)
    return response.status_code, response.json()


def _cases(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    allowed = {k: v for k, v in FILES.items() if k != "/etc/hostname"}
    valid = dict(data, runtime_policy=policy_for(FILES))
    return {
        "valid": valid,
        "tpm_policy_only": dict(data, runtime_policy=""),
        "file_outside_policy": dict(data, runtime_policy=policy_for(allowed)),
        "pcr10_without_log": dict(valid, ima_measurement_list=""),
        "pcr_not_allowed": dict(valid, tpm_policy=json.dumps({"23": ["11" * 32]})),
        "wrong_nonce": dict(valid, nonce="A" * 20),
        "unknown_hash": dict(valid, hash_alg="md5"),
        "missing_ak": dict(valid, tpm_ak=""),
        "no_policy": dict(valid, tpm_policy="", runtime_policy=""),
    }


def _ids(results: dict[str, Any]) -> list[str]:
    return [f["type"] for f in results["failures"]]


async def test_verdicts_and_shapes(verifier: RunningVerifier, data: dict[str, Any]) -> None:
    cases = _cases(data)
    answers = {name: await _post(verifier, {"type": "tpm", "data": d}) for name, d in cases.items()}
    code, body = answers["valid"]
    assert (code, body["status"]) == (200, "Success")
    assert body["results"] == {"valid": True, "claims": cases["valid"], "failures": []}
    expected = {
        "tpm_policy_only": (200, ["ima.validation.ima-ng.not_in_allowlist"] * 3),
        "file_outside_policy": (200, ["ima.validation.ima-ng.not_in_allowlist"]),
        "pcr_not_allowed": (200, ["pcr_validation.invalid_pcr_23"]),
        "wrong_nonce": (200, ["qoute_validation.quote_validation"]),
        "unknown_hash": (200, ["qoute_validation.invalid_hash_alg"]),
        "missing_ak": (400, ["default.missing_param"]),
        "no_policy": (400, ["default.missing_policy"]),
    }
    for name, (status, ids) in expected.items():
        code, body = answers[name]
        assert (code, _ids(body["results"])) == (status, ids), name
        assert body["results"]["valid"] is False and body["results"]["claims"] == {}, name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {"quote": "x"}}, "type"),
        ({"type": "tpm"}, "data"),
        ({"type": "tee", "data": {"nonce": "x"}}, "type"),
        ({"type": "tpm", "data": ["not", "an", "object"]}, "data"),
        ({"type": "tpm", "data": {"quote": 1}}, "data.quote"),
    ],
)
async def test_bad_requests_are_400(verifier: RunningVerifier, body: Any, field: str) -> None:
    code, answer = await _post(verifier, body)
    assert code == 400 and field in answer["status"]


async def test_bad_policy_is_400_and_nothing_is_stored(
    verifier: RunningVerifier, data: dict[str, Any]
) -> None:
    for member in ("runtime_policy", "tpm_policy", "mb_policy"):
        code, answer = await _post(verifier, {"type": "tpm", "data": dict(data, **{member: "{"})})
        assert code == 400 and member in answer["status"], member
    assert (await _post(verifier, {"type": "tpm", "data": data}))[0] == 200
    async with verifier.client() as client:
        agents = (await client.get(f"/{API}/agents/")).json()["results"]["uuids"]
        policies = (await client.get(f"/{API}/allowlists/")).json()["results"]
    assert agents == [] and policies == {"runtimepolicy names": []}


_KEYLIME = """\
import json
from keylime import cloud_verifier_common
from keylime.ima import ima
from keylime.mba import mba
mba.load_imports(skip_custom_policies=True)  # the defaults, as keylime_verifier loads
result = {}
for name, d in payload["cases"].items():
    if not (d["tpm_ak"] and (d["tpm_policy"] or d["runtime_policy"])):
        continue  # refused before any check (the handler's missing_* events)
    failure = cloud_verifier_common.process_verify_attestation(
        d["tpm_ek"], d["tpm_ak"], d["quote"], d["nonce"], d["hash_alg"], d["tpm_policy"],
        ima.deserialize_runtime_policy(d["runtime_policy"]), "",
        d["ima_measurement_list"], "")
    result[name] = {"valid": not failure.events, "ids": failure.get_event_ids()}
"""


@pytest.mark.interop
async def test_same_verdicts_as_keylime(verifier: RunningVerifier, data: dict[str, Any]) -> None:
    cases = _cases(data)
    theirs = await trio.to_thread.run_sync(
        lambda: run_in_keylime(_KEYLIME, {"cases": cases}, timeout=300)
    )
    assert set(theirs) == set(cases) - {"missing_ak", "no_policy"}
    for name, keylime in theirs.items():
        _, body = await _post(verifier, {"type": "tpm", "data": cases[name]})
        # Keylime lists IMA events before PCR ones; the order carries no meaning.
        ours = {"valid": body["results"]["valid"], "ids": sorted(_ids(body["results"]))}
        assert ours == dict(keylime, ids=sorted(keylime["ids"])), name
