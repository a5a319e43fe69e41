"""The status page in a real browser: headless chromium over three fake agents on swtpm.

A person opens the fleet page and sees three PASS rows (the IMA agent's counts the log
entries checked); PCR 23 of one agent's TPM is extended behind its back, and without
reloading, that agent's row turns red with its reason in words; the search box and the
status filter narrow the table; the agent's own page shows its timeline and the PCR that
failed, expected against got.  No page carries V or a key.  The fleet page is saved as a
screenshot (docs/images/status-page.png with LIMELET_UPDATE_SCREENSHOTS=1).  Without
chromium the test skips loudly; with CI set it fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.conftest import open_fake_agent
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, add_body, b64, verifier_config
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tests.verifier.test_store_outage_swtpm import PCR, extend_pcr
from tools.status_browser import browser_missing, open_browser
from tools.swtpm import Swtpm, SwtpmState
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = pytest.mark.swtpm

AGENTS = ("web-1", "web-2", "db-1")
TAMPERED = "db-1"
WITH_IMA = "web-2"  # its TPM carries an emulated IMA log, checked against a runtime policy
WAIT_SECONDS = 90.0  # generous: eight developers share two cores
V = bytes(range(32))
NO_IMA = "\N{EN DASH}"  # status_html's &ndash; for an agent without a runtime policy
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "status-page.png"


def require_browser() -> None:
    reason = browser_missing()
    if reason is None:
        return
    message = f"{reason}: the status page is NOT tested in a browser"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[WebDriver]:
    """open_browser with its blocking start and quit in a worker thread."""
    cm = open_browser(profile)
    driver = await trio.to_thread.run_sync(cm.__enter__)
    try:
        yield driver
    finally:
        await trio.to_thread.run_sync(cm.__exit__, None, None, None)


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(condition, what)


def rows(driver: WebDriver) -> list[str]:
    """The agent ids of the table's rows in order, read in one step: status.js replaces the
    table every few seconds, so an element found earlier may be gone a moment later."""
    script = (
        "return Array.from(document.querySelectorAll('#agents tbody tr[data-agent]'))"
        ".map(function (r) { return r.getAttribute('data-agent'); });"
    )
    return list(driver.execute_script(script))


def row_color(driver: WebDriver, agent_id: str) -> str:
    script = (
        "var r = document.querySelector('#agents tr[data-agent=\"' + arguments[0] + '\"]');"
        "return getComputedStyle(r.cells[0]).backgroundColor;"
    )
    return str(driver.execute_script(script, agent_id))


def click_link(driver: WebDriver, text: str) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        driver.find_element("link text", text).click()
    except StaleElementReferenceException:
        return False  # replaced by a refresh between finding and clicking: try again
    return True


def row_cells(driver: WebDriver, agent_id: str) -> tuple[str, list[str]]:
    """The row's class and its cells' text, read in one step (the table is replaced live)."""
    script = (
        "var r = document.querySelector('#agents tr[data-agent=\"' + arguments[0] + '\"]');"
        "return r ? [r.className, Array.from(r.cells).map(function (c) {"
        " return c.innerText; })] : null;"
    )
    got = driver.execute_script(script, agent_id)
    return (got[0], got[1]) if got else ("", [])


async def wait_state(verifier: RunningVerifier, agent_id: str, ok: Callable[[Any], bool]) -> None:
    async with verifier.client() as client:
        with trio.fail_after(WAIT_SECONDS):
            while True:
                response = await client.get(f"/{API}/agents/{agent_id}")
                if response.status_code == 200 and ok(response.json()["results"]):
                    return
                await trio.sleep(0.1)


async def start_fleet(
    nursery: trio.Nursery, stack: AsyncExitStack, template: SwtpmState, tls: TlsFiles, tmp: Path
) -> tuple[RunningVerifier, dict[str, FakeAgent]]:
    agents = {}
    ima_log = tmp / "ascii_runtime_measurements"
    for agent_id in AGENTS:
        tpm = stack.enter_context(Swtpm(template, tmp / f"swtpm-{agent_id}"))
        if agent_id == WITH_IMA:  # before the agent connects: swtpm serves one client
            await trio.to_thread.run_sync(write_ima_log, tpm.tcti, ima_log)
        log = ima_log if agent_id == WITH_IMA else None
        agents[agent_id] = await stack.enter_async_context(
            open_fake_agent(nursery, tpm, tls, tmp / agent_id, ima_log=log)
        )
    config = verifier_config(tmp / "verifier", tls, status_page_address="127.0.0.1:0")
    verifier = RunningVerifier(config, await nursery.start(serve_verifier, config), tls)
    pinned = json.dumps({str(PCR): ["00" * 32], "mask": hex(1 << 16)})
    async with verifier.client() as client:
        for agent_id, agent in agents.items():
            body = add_body(
                ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=agent.port, v=V,
                tpm_policy=pinned if agent_id == TAMPERED else '{"mask": "0x10000"}',
                runtime_policy=b64(policy_for(FILES).encode()) if agent_id == WITH_IMA else "",
            )  # fmt: skip
            response = await client.post(f"/{API}/agents/{agent_id}", json=body)
            assert response.status_code == 200, response.text
    for agent_id in AGENTS:
        await wait_state(verifier, agent_id, lambda r: r["attestation_count"] >= 2)
    return verifier, agents


def see_all_passing(driver: WebDriver, url: str, agents: dict[str, FakeAgent]) -> None:
    driver.get(url)
    until(driver, lambda d: set(rows(d)) == set(AGENTS), "three agent rows")
    assert "3 agents" in driver.find_element("id", "summary").text
    for agent_id, agent in agents.items():
        klass, cells = row_cells(driver, agent_id)
        assert klass == "pass", (agent_id, cells)
        assert cells[:4] == [agent_id, f"127.0.0.1:{agent.port}", "Get Quote", "PASS"]
        assert cells[4].endswith("s ago") and int(cells[5]) >= 2
        assert cells[7] == (str(len(FILES)) if agent_id == WITH_IMA else NO_IMA), cells


def see_the_failure(driver: WebDriver) -> None:
    """Without a reload: the live refresh turns the tampered row red, with its reason."""
    until(driver, lambda d: row_cells(d, TAMPERED)[0] == "fail", "the tampered row turns red")
    _, cells = row_cells(driver, TAMPERED)
    assert cells[2:4] == ["Invalid Quote", "FAIL"]
    assert f"pcr_validation.invalid_pcr_{PCR}" in cells[6]
    assert f"PCR {PCR} holds a value the policy does not allow" in cells[6]
    color = row_color(driver, TAMPERED)
    assert color == "rgb(251, 213, 213)", color  # status.css tr.fail
    assert rows(driver)[0] == TAMPERED  # failures first
    for agent_id in AGENTS:
        if agent_id != TAMPERED:
            assert row_cells(driver, agent_id)[0] == "pass"


def filter_the_table(driver: WebDriver) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    search = driver.find_element("name", "q")
    search.send_keys("web")
    until(driver, lambda d: set(rows(d)) == {"web-1", "web-2"}, "search narrows to web-*")
    search.send_keys(Keys.BACKSPACE * len("web"))  # as a person would; clear() fires no event
    until(driver, lambda d: set(rows(d)) == set(AGENTS), "search cleared")
    Select(driver.find_element("name", "status")).select_by_value("FAIL")
    until(driver, lambda d: set(rows(d)) == {TAMPERED}, "status filter FAIL")
    Select(driver.find_element("name", "status")).select_by_value("")
    until(driver, lambda d: set(rows(d)) == set(AGENTS), "status filter off")


def open_the_agent(driver: WebDriver) -> str:
    until(driver, lambda d: click_link(d, TAMPERED), "a click on the agent's link")
    until(driver, lambda d: d.current_url.endswith(f"/agents/{TAMPERED}"), "the agent page")
    facts = driver.find_element("id", "agent").text
    assert "Runtime policy\n(none)" in facts and "Invalid Quote" in facts, facts
    timeline = driver.find_element("id", "timeline").text
    assert "Start → Get Quote" in timeline or "Start → Provide V" in timeline, timeline
    assert "Get Quote → Invalid Quote" in timeline, timeline
    failure = driver.find_element("id", "failure").text
    assert f"PCR {PCR} holds a value the policy does not allow" in failure
    assert f"PCR\n{PCR}" in failure or f"PCR {PCR}" in failure
    assert "expected " + "00" * 32 in failure.replace("\n", " "), failure
    return str(driver.page_source)


async def test_a_person_sees_the_fleet_and_the_tampered_agent(
    nursery: trio.Nursery, swtpm_template: SwtpmState, tls_files: TlsFiles, tmp_path: Path
) -> None:
    require_browser()
    async with AsyncExitStack() as stack:
        verifier, agents = await start_fleet(nursery, stack, swtpm_template, tls_files, tmp_path)
        url = verifier.bound.status_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        async with browser(tmp_path / "chromium-profile") as driver:
            await trio.to_thread.run_sync(see_all_passing, driver, url, agents)
            await extend_pcr(agents[TAMPERED])
            await trio.to_thread.run_sync(see_the_failure, driver)
            await wait_state(
                verifier, TAMPERED, lambda r: r["operational_state"] == State.INVALID_QUOTE
            )
            await trio.to_thread.run_sync(filter_the_table, driver)
            await trio.to_thread.run_sync(driver.save_screenshot, str(tmp_path / "fleet.png"))
            if os.environ.get("LIMELET_UPDATE_SCREENSHOTS") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                await trio.to_thread.run_sync(driver.save_screenshot, str(SCREENSHOT))
            fleet_source = str(driver.page_source)
            agent_source = await trio.to_thread.run_sync(open_the_agent, driver)
            await trio.to_thread.run_sync(driver.save_screenshot, str(tmp_path / "agent.png"))
            if os.environ.get("LIMELET_UPDATE_SCREENSHOTS") == "1":
                shot = str(SCREENSHOT.with_name("status-agent.png"))
                await trio.to_thread.run_sync(driver.save_screenshot, shot)
        assert (tmp_path / "fleet.png").read_bytes().startswith(b"\x89PNG")
        for source in (fleet_source, agent_source):
            assert b64(V) not in source
            for agent in agents.values():
                assert b64(agent.ak_public) not in source
                assert "BEGIN" not in source  # no certificate or key of any kind
