"""The dashboard page in headless Chromium: sign in, see an order arrive live, accept, assign."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import chromium
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import get_json_when, post_request
from tests.integration.station_worker.station import (
    dispatch,
    new_station,
    order_when,
    publish_events,
    redo_dispatched,
    routed_station,
)
from tests.integration.station_worker.test_station_dashboard import (
    COMPLETION,
    post,
    station_events,
)

pytestmark = pytest.mark.integration


def sign_in(browser: WebDriver, base: str, token: str) -> None:
    """Open the dashboard in a new tab and sign in with ``token``. The browser is the
    module's, and sessionStorage is per tab: a new tab holds no token of an earlier test (one a
    sign-in still in flight could write back after it was cleared)."""
    earlier = browser.current_window_handle
    browser.switch_to.new_window("tab")
    fresh = browser.current_window_handle
    browser.switch_to.window(earlier)
    browser.close()
    browser.switch_to.window(fresh)
    browser.get(f"{base}/dashboard")
    WebDriverWait(browser, 15).until(ec.element_to_be_clickable((By.ID, "token"))).send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


async def test_staff_see_a_new_order_live_accept_and_assign_it_and_the_audit_sees_it(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, browser: WebDriver
) -> None:
    station, community = await routed_station(
        stack, db, [("sw1", ["elder_care"], 5, True), ("sw2", ["child_protection"], 5, True)]
    )
    wait = WebDriverWait(browser, 15)
    sign_in(browser, station.base, station.manager)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert station.id in browser.find_element(By.ID, "who").text
    browser.execute_script("window.notReloaded = true")

    async def submit(seed: int) -> httpx.Response:
        body = request_body(seed, category="elder_care", urgency="urgent")
        body["location"] |= community
        return await post_request(http, stack, body)

    created = await submit(77)
    assert created.status_code == 201, created.text
    order_id = created.json()["order_id"]
    row = f'tr[data-order-id="{order_id}"]'

    wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f'{row}[data-status="dispatched"]'))
    )
    assert browser.execute_script("return window.notReloaded") is True
    row_element = browser.find_element(By.CSS_SELECTOR, row)
    accept = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f'{row} button[data-action="accept"]'))
    )

    # Another order arrives live while the pointer is on this one's button: the page updates
    # the queue around it and the button the user is about to click stays the same element.
    other = await submit(78)
    assert other.status_code == 201, other.text
    wait.until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'tr[data-order-id="{other.json()["order_id"]}"]')
        )
    )
    accept.click()
    wait.until(lambda _: row_element.get_attribute("data-status") == "accepted")
    wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f'{row} button[data-action="assign"]'))
    ).click()
    select = wait.until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'{row} select[data-role="worker-select"]')
        )
    )
    # The suggestions come ranked: the worker with the matching skill first.
    options = [o.get_attribute("value") for o in Select(select).options]
    assert options == [f"{station.id}-sw1", f"{station.id}-sw2"]
    Select(select).select_by_value(f"{station.id}-sw1")
    wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f'{row} button[data-action="confirm-assign"]'))
    ).click()
    wait.until(lambda _: row_element.get_attribute("data-status") == "assigned")
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.worker").text == f"{station.id}-sw1"
    assert browser.execute_script("return window.notReloaded") is True
    assert browser.find_element(By.ID, "message").text == ""

    trail = await get_json_when(
        http,
        f"{stack.urls['audit']}/v1/orders/{order_id}/trail",
        {"Authorization": f"Bearer {stack.supervisor_token}"},
        lambda t: any(e["event_type"] == "order.assigned" for e in t),
    )
    steps = {e["event_type"]: e["event"] for e in trail}
    assert steps["order.accepted"]["actor"] == {
        "kind": "station_staff",
        "id": f"{station.id}-manager",
    }
    assert steps["order.assigned"]["payload"]["worker_id"] == f"{station.id}-sw1"


async def test_a_redo_shows_marked_with_its_reason_and_a_follow_up_visit_is_recorded(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, browser: WebDriver
) -> None:
    station = await new_station(stack, db, [("sw1", [], 5, True)])
    ((worker, token),) = station.workers.items()
    redone = (await dispatch(stack, http, station))["order_id"]
    followed = (await dispatch(stack, http, station))["order_id"]
    due = datetime.now(UTC).date() + timedelta(days=5)
    for order_id, extra in ((redone, {}), (followed, {"follow_up_by": due.isoformat()})):
        assert (await post(http, station, order_id, "accept")).status_code == 200
        assert (
            await post(http, station, order_id, "assign", {"worker_id": worker})
        ).status_code == 200
        assert (await post(http, station, order_id, "start", token=token)).status_code == 200
        done = await post(http, station, order_id, "complete", COMPLETION | extra, token=token)
        assert done.status_code == 200, done.text
    await publish_events(
        stack, redo_dispatched(station.id, redone, 2, reason="Meals <b>never</b> came")
    )
    await order_when(http, station, redone, "dispatched")

    wait = WebDriverWait(browser, 15)
    sign_in(browser, station.base, token)
    row = f'tr[data-order-id="{redone}"]'
    badge = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f'{row} [data-role="redo"]'))
    )
    assert badge.text == "发回重办 #1"
    reason = browser.find_element(By.CSS_SELECTOR, f'{row} [data-role="redo-reason"]')
    assert reason.text == "Meals <b>never</b> came"  # shown as text, never as HTML

    # The worker's follow-up task is listed with its due day; they record the last visit.
    task = f'tr[data-follow-up="{followed}"]'
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, task)))
    assert due.isoformat() in browser.find_element(By.CSS_SELECTOR, task).text
    browser.find_element(By.CSS_SELECTOR, f'{task} button[data-action="visit"]').click()
    browser.find_element(By.CSS_SELECTOR, f'{task} textarea[name="summary"]').send_keys(
        "Meals arrive every day now"
    )
    browser.find_element(By.CSS_SELECTOR, f'{task} button[data-action="confirm-visit"]').click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, task)))
    assert browser.find_element(By.ID, "message").text == ""
    events = await station_events(db, followed)
    assert events[-1]["type"] == "order.followed_up"
    assert (events[-1]["payload"]["worker_id"], events[-1]["payload"]["next_follow_up_by"]) == (
        worker,
        None,
    )
    browser.find_element(By.ID, "signout").click()
