"""Headless Chromium (Debian's, with its chromedriver) for the page tests, as one profile."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.debian import debian_tool


@contextlib.contextmanager
def chromium(*flags: str, options: webdriver.ChromeOptions | None = None) -> Iterator[WebDriver]:
    """A fresh headless Chromium with ``flags`` added (and ``options``, for preferences)."""
    options = options or webdriver.ChromeOptions()
    options.binary_location = debian_tool("chromium", "chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='swd-chromium-')}",
        *flags,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=Service(debian_tool("chromedriver", "chromium-driver"))
    )
    try:
        yield driver
    finally:
        driver.quit()
