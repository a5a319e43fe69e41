"""``/metrics`` of a registrar enrolling a swtpm agent: registrations and activations by result."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from registrar_lite.server import serve_registrar
from registrar_lite.service import expected_auth_tag
from tests.cv_ca import TlsFiles
from tests.registrar.support import API, RunningRegistrar, b64, registrar_config
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm


def by_result(text: str, family_name: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == family_name:
            return {
                s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")
            }
    raise AssertionError(f"{family_name} not in the scrape")


async def _enrol(registrar: RunningRegistrar, tpm_dir: Path, swtpm: Swtpm) -> None:
    """One good registration and activation, one wrong auth tag, one malformed body."""
    async with opened(config(swtpm.tcti, tpm_dir, "rsa")) as tpm:
        ek, ak = await tpm.ek(), await tpm.ak()
        body = {"ek_tpm": b64(ek.public), "aik_tpm": b64(ak.public), "ekcert": None}
        async with registrar.agent_client() as agent:
            posted = await agent.post(f"/{API}/agents/m1", json=body)
            assert posted.status_code == 200, posted.text
            blob = base64.b64decode(posted.json()["results"]["blob"])
            challenge = await tpm.activate_credential(blob)
            tag = expected_auth_tag(base64.b64encode(challenge).decode(), "m1")
            good = await agent.put(f"/{API}/agents/m1", json={"auth_tag": tag})
            assert good.status_code == 200, good.text
            wrong = await agent.put(f"/{API}/agents/m1", json={"auth_tag": "00" * 48})
            assert wrong.status_code >= 400
            bad = await agent.post(f"/{API}/agents/m2", json={"aik_tpm": "not base64"})
            assert bad.status_code == 400, bad.text


async def test_counts_match_the_registrars_agents(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, swtpm: Swtpm
) -> None:
    cfg = registrar_config(tmp_path / "registrar", tls_files)
    registrar = RunningRegistrar(cfg, await nursery.start(serve_registrar, cfg), tls_files)
    await _enrol(registrar, tmp_path / "agent", swtpm)
    async with registrar.admin_client() as admin:
        scraped = await admin.get("/metrics")
        ids = (await admin.get(f"/{API}/agents/")).json()["results"]["uuids"]
    assert scraped.status_code == 200, scraped.text
    registrations = by_result(scraped.text, "limelet_registrar_registrations")
    activations = by_result(scraped.text, "limelet_registrar_activations")
    assert registrations == {"ok": len(ids), "refused": 1, "error": 0}
    stored = [registrar.stored(agent_id) for agent_id in ids]
    active = sum(1 for row in stored if row is not None and row["active"])
    assert activations == {"ok": active, "refused": 1, "error": 0}
    assert ids == ["m1"]


async def test_metrics_are_not_served_to_the_agent_listener(
    registrar: RunningRegistrar,
) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.get("/metrics")
    assert response.status_code == 403
    assert "limelet_registrar" not in response.text


async def test_metrics_need_a_client_certificate(registrar: RunningRegistrar) -> None:
    with pytest.raises(httpx.HTTPError):
        async with registrar.admin_client(with_cert=False) as admin:
            await admin.get("/metrics")
