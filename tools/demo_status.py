"""The demo's look at the verifier's status page: its address, and a screenshot of the fleet
after the tamper step, taken with headless chromium when it is installed
(tools/status_browser.py); without it the demo says so and goes on."""

from __future__ import annotations

from pathlib import Path

from tools.narrate import detail
from tools.status_browser import browser_missing, screenshot

LOOPBACK = "127.0.0.1"


def status_page_line(port: int) -> str:
    """The verifier config line that turns the page on (loopback only, config.py)."""
    return f'status_page_address = "{LOOPBACK}:{port}"\n'


def status_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/"


def show_status_page(port: int, workdir: Path) -> None:
    """Tell where the page is and save what it shows now."""
    detail(f"the verifier's status page (read-only, loopback only): {status_url(port)}")
    missing = browser_missing()
    if missing is not None:
        detail(f"no screenshot of it: {missing}")
        return
    out = workdir / "status-page.png"
    try:
        screenshot(status_url(port), out, workdir / "chromium-profile")
    except Exception as exc:  # noqa: BLE001 - the demo goes on without its picture
        detail(f"no screenshot of it: chromium failed: {str(exc).splitlines()[0][:200]}")
        return
    detail(f"a screenshot of it after the tamper step: {out}")
