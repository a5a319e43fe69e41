"""Debian's chromium, headless under Selenium, for the verifier's status page (the browser
test and the demo's screenshot).

Debian packages it as ``chromium`` and ``chromium-driver`` (scripts/setup installs both); we
name both executables so Selenium never goes looking for a driver on the network.  Each
session gets a fresh profile directory and the flags below, which keep a headless chromium
from phoning home (sync, component updates, background networking) or needing a GPU or a
sandbox it cannot have when run as root in a container.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW_SIZE = (1280, 800)
PAGE_LOAD_TIMEOUT_SECONDS = 60


def browser_missing() -> Optional[str]:
    """Why no browser can be driven here (None: chromium, its driver and selenium are all
    installed)."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(program) is None:
            return f"{program} not found (Debian package {package})"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium; the test extra has it)"
    return None


@contextmanager
def open_browser(profile_dir: Path) -> Iterator[WebDriver]:
    """A headless chromium with a fresh profile in ``profile_dir``; always quit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    chromium = shutil.which(CHROMIUM)
    driver_path = shutil.which(CHROMEDRIVER)
    if chromium is None or driver_path is None:
        raise RuntimeError(browser_missing() or "no browser")
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile_dir.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_SECONDS)
        yield driver
    finally:
        driver.quit()


def screenshot(url: str, out: Path, profile_dir: Path) -> None:
    """Open ``url`` and save what a person sees as a PNG in ``out``."""
    with open_browser(profile_dir) as driver:
        driver.get(url)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
