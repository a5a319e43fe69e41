"""The status page without a browser: pure rendering (escaping, no secrets, the words for an
event id), the timeline as AgentStates.apply records it, and the loopback listener's answers
to bad requests (4xx, never a 500)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import httpx
import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.memory_store import MemoryStore
from tests.verifier.support import RunningVerifier, verifier_config
from tests.verifier.test_ima_swtpm import FILES, policy_for
from tests.verifier.test_ima_swtpm import run as ima_run
from tests.verifier.test_store import record
from tools.swtpm import Swtpm
from verifier_lite import status_html as html
from verifier_lite.config import VerifierConfig, status_page_host_port
from verifier_lite.errors import ConfigError
from verifier_lite.failures import Component, event
from verifier_lite.server import serve_verifier
from verifier_lite.states import Event, State
from verifier_lite.timeline import TimelineEvent, evidence, plain_reason
from verifier_lite.transitions import AgentStates

HOSTILE_ID = '<script>alert("x")</script>'
SECRETS = {
    "v": "SECRET-V-c2VjcmV0",
    "public_key": "-----BEGIN PUBLIC KEY-----SECRET-NK",
    "mtls_cert": "-----BEGIN CERTIFICATE-----SECRET-CERT",
    "ak_tpm": "SECRET-AK-AAAA",
    "revocation_key": "SECRET-REVOCATION-KEY",
    "ima_sign_verification_keys": "SECRET-IMA-KEYS",
    "meta_data": '{"payload": "SECRET-PAYLOAD"}',
}
NOW = 1_800_000_000.0


def test_agent_row_escapes_and_carries_no_secret() -> None:
    agent = record(
        HOSTILE_ID, **SECRETS, operational_state=int(State.INVALID_QUOTE),
        last_event_id="ima.validation.ima-ng.not_in_allowlist", attestation_count=4,
        last_successful_attestation=int(NOW) - 30,
    )  # fmt: skip
    row = html.agent_row(agent, now=NOW, max_interval=10.0, ima_entries=17)
    bad = TimelineEvent(
        HOSTILE_ID, NOW - 1, int(State.GET_QUOTE), int(State.INVALID_QUOTE), "quote_invalid",
        "ima.validation.ima-ng.not_in_allowlist",
        json.dumps({"entry": 17, "path": "/usr/bin/<img src=x onerror=alert(1)>"}),
    )  # fmt: skip
    pages = (
        html.fleet_fragment([row], [row], 10.0, NOW),
        html.agent_fragment(row, [bad], NOW),
        html.page(HOSTILE_ID, "", f"/agents/{HOSTILE_ID}/fragment"),
    )
    for text in pages:
        assert "<script>alert" not in text and "<img src=x" not in text
        for secret in SECRETS.values():
            assert "SECRET" not in text, secret
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[0]
    assert "/usr/bin/&lt;img src=x onerror=alert(1)&gt;" in pages[1]
    assert "FAIL" in pages[0] and "30 s ago" in pages[0] and ">17<" in pages[0]


def test_failures_come_first_and_filters_narrow() -> None:
    rows = [
        html.agent_row(record("b-pass", operational_state=int(State.GET_QUOTE),
                              last_successful_attestation=int(NOW)),
                       now=NOW, max_interval=10.0, ima_entries=None),
        html.agent_row(record("c-fail", operational_state=int(State.FAILED)),
                       now=NOW, max_interval=10.0, ima_entries=None),
        html.agent_row(record("a-stale", operational_state=int(State.GET_QUOTE),
                              last_successful_attestation=int(NOW) - 60),
                       now=NOW, max_interval=10.0, ima_entries=None),
    ]  # fmt: skip
    assert [r.agent_id for r in html.sort_rows(rows)] == ["c-fail", "a-stale", "b-pass"]
    assert [r.status for r in html.sort_rows(rows)] == ["FAIL", "PENDING", "PASS"]
    assert [r.agent_id for r in html.select_rows(rows, "PENDING", "")] == ["a-stale"]
    assert [r.agent_id for r in html.select_rows(rows, "", "PASS")] == ["b-pass"]
    assert html.select_rows(rows, "FAIL", "zzz") == []
    text = html.fleet_fragment(rows, [], 10.0, NOW)
    assert "no agent matches" in text and "FAIL 1" in text and "PENDING 1" in text


@pytest.mark.parametrize(
    ("event_id", "words"),
    [
        ("pcr_validation.invalid_pcr_23", "PCR 23 holds a value the policy does not allow"),
        ("measured_boot.invalid_pcr_4", "the boot event log does not replay to PCR 4"),
        ("ima.validation.ima-ng.not_in_allowlist", "a measured file does not match"),
        ("qoute_validation.quote_validation", "the quote did not verify"),
        ("internal.unreachable", "the agent could not be reached"),
        ("something.new", "something.new"),
        (None, ""),
    ],
)
def test_plain_reason(event_id: str | None, words: str) -> None:
    assert plain_reason(event_id).startswith(words)


def test_evidence_of_a_pcr_and_of_an_ima_entry() -> None:
    pcr = json.dumps({"context": "PCR value is not in allowlist", "got": "ab", "expected": ["00"]})
    assert evidence("pcr_validation.invalid_pcr_23", pcr) == [
        ("PCR", "23"), ("expected", "00"), ("got", "ab"),
        ("message", "PCR value is not in allowlist"),
    ]  # fmt: skip
    ima = json.dumps({"entry": 5, "path": "/usr/bin/evil", "template": "ima-ng"})
    assert evidence("ima.validation.ima-ng.not_in_allowlist", ima) == [
        ("IMA entry", "5"), ("path", "/usr/bin/evil"), ("template", "ima-ng"),
    ]  # fmt: skip
    assert evidence("x", "not json") == [("message", "not json")]
    assert evidence(None, None) == []


async def test_apply_records_changes_and_failures_with_log_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    await store.add_agent(record(), None, None)
    states = AgentStates(store)
    agent = await states.apply(record(), Event.QUOTE_OK, ima_entries=12)
    agent = await states.apply(agent, Event.QUOTE_OK)  # no change: not an event
    failure = event(
        Component.PCR_VALIDATION, "invalid_pcr_16", {"got": "ab", "expected": "cd"}, True
    )
    with caplog.at_level(logging.INFO, logger="limelet.verifier"):
        await states.apply(agent, Event.QUOTE_INVALID, failure=failure)
    events = await store.timeline("a1", 10)
    assert [(e.from_state, e.to_state, e.event) for e in events] == [
        (State.GET_QUOTE, State.INVALID_QUOTE, "quote_invalid"),
        (State.START, State.GET_QUOTE, "quote_ok"),
    ]
    assert events[0].event_id == "pcr_validation.invalid_pcr_16"
    assert json.loads(events[0].context or "") == {"got": "ab", "expected": "cd"}
    assert states.ima_progress == {"a1": 12}
    await states.apply(await store.get_agent("a1") or record(), Event.REACTIVATE)
    assert states.ima_progress == {}
    logged = [r for r in caplog.records if getattr(r, "event_id", None)]
    assert logged and all(r.__dict__["agent_id"] == "a1" for r in logged)
    assert {r.__dict__["reason"] for r in logged} == {
        "PCR 16 holds a value the policy does not allow"
    }


@pytest.mark.parametrize("address", ["0.0.0.0:8882", "192.0.2.1:8882", "localhost:8882",
                                     "127.0.0.1", "127.0.0.1:99999", "[::1]:x"])  # fmt: skip
def test_the_page_listens_on_loopback_only(address: str) -> None:
    with pytest.raises(ConfigError, match="status_page_address"):
        VerifierConfig(status_page_address=address)


def test_loopback_addresses_are_accepted() -> None:
    assert status_page_host_port("127.0.0.1:8882") == ("127.0.0.1", 8882)
    assert status_page_host_port("[::1]:0") == ("::1", 0)
    assert VerifierConfig().status_page_address == ""  # off unless asked for
    with pytest.raises(ConfigError, match="log_format"):
        VerifierConfig(log_format="xml")


async def test_bad_requests_are_4xx(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> None:
    config = verifier_config(tmp_path / "v", tls_files, status_page_address="127.0.0.1:0")
    bound = await nursery.start(serve_verifier, config)
    assert bound.status_url is not None
    async with httpx.AsyncClient(base_url=bound.status_url, timeout=30) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "0 agents" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["content-type"].startswith("text/html")
        for path, code in (
            ("/?status=BOGUS", 400),
            ("/fleet?q=" + "x" * 300, 400),
            ("/agents/a%20b", 400),
            ("/agents/nobody", 404),
            ("/agents/nobody/fragment", 404),
            ("/nothing-here", 404),
        ):
            response = await client.get(path)
            assert response.status_code == code, (path, response.text)
        for hostile in ("%00", "%ff%fe", "\u202e", "..%2f..%2fetc", "x" * 10_000, "%"):
            for path in (f"/agents/{hostile}", f"/?q={hostile}", f"/fleet?status={hostile}"):
                response = await client.get(path)
                assert 400 <= response.status_code < 500 or response.status_code == 200, path
        assert (await client.post("/", content=b"x")).status_code == 405
        rebound = await client.get("/", headers={"Host": "evil.example:80"})
        assert rebound.status_code == 400
        assert (
            (await client.get("/static/status.js"))
            .headers["content-type"]
            .startswith("text/javascript")
        )


@pytest.mark.swtpm
@pytest.mark.parametrize("outcome", ["pass", "fail"])
async def test_ima_progress_and_the_failing_entry_are_shown(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path, outcome: str
) -> None:
    """A real IMA log on swtpm: the fleet counts the entries checked; a file outside the
    policy shows on the agent's page as the IMA entry and its path."""
    config = verifier_config(tmp_path / "v", tls_files, status_page_address="127.0.0.1:0")
    bound = await nursery.start(serve_verifier, config)
    verifier = RunningVerifier(config, bound, tls_files)
    allowed = {k: v for k, v in FILES.items() if outcome == "pass" or k != "/etc/hostname"}
    status = await ima_run(nursery, swtpm, tls_files, verifier, tmp_path, policy_for(allowed))
    async with httpx.AsyncClient(base_url=str(bound.status_url), timeout=30) as client:
        fleet = (await client.get("/fleet")).text
        agent = (await client.get("/agents/ima1/fragment")).text
    if outcome == "pass":
        assert status["operational_state"] == State.GET_QUOTE
        # Every entry of the log was checked: the next quote asks for the one after them.
        assert f"<td>{len(FILES)}</td></tr>" in fleet, fleet
        assert "<dt>IMA entries checked</dt><dd>3</dd>" in agent
        assert "<dt>Runtime policy</dt><dd>ima1</dd>" in agent
        return
    assert status["operational_state"] == State.INVALID_QUOTE
    assert "ima.validation.ima-ng.not_in_allowlist" in fleet
    assert "a measured file does not match the runtime policy" in fleet
    assert '<section id="failure">' in agent
    # /etc/hostname is the log's third line (ImaFailure.entry: the line number in the log).
    assert "<th>IMA entry</th><td><code>3</code></td>" in agent, agent
    assert "<th>detail</th>" not in agent  # an empty fact is left out
    assert "<th>path</th><td><code>/etc/hostname</code></td>" in agent, agent
    assert "Start &rarr; Invalid Quote" in agent, agent


def test_no_browser_skips_loudly_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.verifier import test_status_page_browser as browser_test
    from tools import status_browser

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert status_browser.browser_missing() == "chromium not found (Debian package chromium)"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="NOT tested in a browser"):
        browser_test.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium not found"):
        browser_test.require_browser()
