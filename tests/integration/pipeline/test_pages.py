"""Every service's pages in headless Chromium that can reach no host but loopback: the landing
page in Simplified Chinese first and in English by the switch, ``/docs`` and ``/redoc``; their
scripts, styles and icons come from the service. The browser's own log of every request it
made shows none to another host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium
from tests.conftest import RunningStack
from tests.debian import debian_file

pytestmark = pytest.mark.integration

SERVICES = ("dispatch_center", "station_worker", "audit")
SCREENSHOTS = Path(".swdispatch/screenshots")
TITLES = {
    "dispatch_center": ("派单中心", "Dispatch center"),
    "station_worker": ("社工站", "Social-work station"),
    "audit": ("审计与考核", "Audit and evaluation"),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    # A font with Chinese glyphs, for the screenshots (the pages name none: the system's).
    debian_file("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei")
    options = webdriver.ChromeOptions()
    # A browser in a county office: Simplified Chinese first.
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    with chromium(
        "--lang=zh-CN",
        # No name but loopback resolves: a page that needs another host fails to render.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
        options=options,
    ) as driver:
        yield driver


def _requested_hosts(browser: WebDriver) -> set[str]:
    hosts = set()
    for entry in browser.get_log("performance"):  # type: ignore[no-untyped-call]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")):
                hosts.add(urlsplit(url).hostname or "")
    return hosts


@pytest.mark.parametrize("service", SERVICES)
def test_the_api_docs_render_with_no_other_host(
    stack: RunningStack, browser: WebDriver, service: str
) -> None:
    base = stack.urls[service]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("performance")  # type: ignore[no-untyped-call]

    browser.get(f"{base}/docs")
    operations = WebDriverWait(browser, 20).until(
        ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".opblock"))
    )
    assert len(operations) >= 3
    browser.save_screenshot(str(SCREENSHOTS / f"{service}-docs.png"))

    browser.get(f"{base}/redoc")
    WebDriverWait(browser, 20).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "[data-section-id]"))
    )
    browser.save_screenshot(str(SCREENSHOTS / f"{service}-redoc.png"))

    assert _requested_hosts(browser) <= {"127.0.0.1", "localhost"}


@pytest.mark.parametrize("service", SERVICES)
def test_the_landing_page_is_chinese_first_and_english_by_the_switch(
    stack: RunningStack, browser: WebDriver, service: str
) -> None:
    base = stack.urls[service]
    chinese, english = TITLES[service]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    browser.get_log("performance")  # type: ignore[no-untyped-call]

    browser.get(f"{base}/")
    heading = WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == chinese
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    browser.save_screenshot(str(SCREENSHOTS / f"{service}-landing-zh_CN.png"))

    browser.find_element(By.LINK_TEXT, "English").click()
    WebDriverWait(browser, 10).until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), english))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    browser.save_screenshot(str(SCREENSHOTS / f"{service}-landing-en.png"))
    browser.get(f"{base}/")  # remembered
    assert browser.find_element(By.TAG_NAME, "h1").text == english

    browser.find_element(By.LINK_TEXT, "中文").click()
    WebDriverWait(browser, 10).until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), chinese))
    assert _requested_hosts(browser) <= {"127.0.0.1", "localhost"}
