"""The demo county, its seed data and credentials, and the demo traffic generator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.audit.admin import create_reader
from services.dispatch_center.admin import (
    create_integration,
    create_operator,
    upsert_community,
    upsert_station,
)
from services.station_worker.admin import create_staff, create_worker
from shared.db import transaction_in
from shared.domain import BeneficiaryGroup, Category, ReporterRole, Urgency
from swdispatch.console import say
from swdispatch.demo_loop import around_the_loop


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    township_code: str
    communities: tuple[tuple[str, str], ...]


COUNTY = (
    Station(
        "st-chengxiang",
        "Chengxiang Street Social-Work Station",
        "TS-CX",
        (
            ("CX-XINHUA", "Xinhua Community"),
            ("CX-NANYUAN", "Nanyuan Community"),
            ("CX-BEIMEN", "Beimen Community"),
        ),
    ),
    Station(
        "st-shaxi",
        "Shaxi Township Social-Work Station",
        "TS-SX",
        (
            ("SX-DONGXIN", "Dongxin Village"),
            ("SX-TAIPING", "Taiping Village"),
            ("SX-SONGNAN", "Songnan Village"),
        ),
    ),
    Station(
        "st-liuhe",
        "Liuhe Township Social-Work Station",
        "TS-LH",
        (
            ("LH-HAIYUN", "Haiyun Village"),
            ("LH-DONGCANG", "Dongcang Village"),
            ("LH-XINZHEN", "Xinzhen Village"),
            ("LH-PENGQIAO", "Pengqiao Village"),
        ),
    ),
)
# A village no station covers yet: its requests wait at the center as unroutable.
UNCOVERED = {"LH-PENGQIAO"}

SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu")
GIVEN = ("Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Hua", "Jun", "Xia", "Ping", "Qiang")


def random_name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(GIVEN).lower()}"


def random_phone(rng: random.Random) -> str:
    return f"+86 13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


def intake_body(
    rng: random.Random,
    *,
    id_prefix: str,
    township_code: str,
    community_code: str,
    group: BeneficiaryGroup,
    category: Category,
    urgency: Urgency,
) -> dict[str, Any]:
    """An intake request body with made-up people and address."""
    return {
        "external_id": f"{id_prefix}-{uuid.uuid4()}",
        "reporter": {
            "id": f"grid-{rng.randint(100, 999)}",
            "name": random_name(rng),
            "role": rng.choice(list(ReporterRole)).value,
            "phone": random_phone(rng),
        },
        "beneficiary": {
            "name": random_name(rng),
            "group": group.value,
            "phone": random_phone(rng) if rng.random() < 0.6 else None,
            "consent_to_share": rng.random() < 0.9,
        },
        "location": {
            "township_code": township_code,
            "community_code": community_code,
            "address": f"No. {rng.randint(1, 200)}, Lane {rng.randint(1, 30)}",
        },
        "category": category.value,
        "urgency": urgency.value,
        "description": "Reported during a grid visit; needs a follow-up by a social worker.",
        "reported_at": (datetime.now(UTC) - timedelta(minutes=rng.randint(1, 90))).isoformat(),
    }


def random_request(rng: random.Random, *, community: str | None = None) -> dict[str, Any]:
    """A plausible intake body for the demo county."""
    station = rng.choice(COUNTY)
    code = community or rng.choice([c for c, _ in station.communities if c not in UNCOVERED])
    township = next(s.township_code for s in COUNTY for c, _ in s.communities if c == code)
    return intake_body(
        rng,
        id_prefix="demo",
        township_code=township,
        community_code=code,
        group=rng.choice(list(BeneficiaryGroup)),
        category=rng.choice(list(Category)),
        urgency=rng.choices(list(Urgency), weights=(1, 3, 12))[0],
    )


async def seed(database_url: str, callback_secret_key: str) -> dict[str, Any]:
    """Write the demo county into each service's own schema; return fresh demo credentials."""
    async with transaction_in("dispatch_center", database_url) as conn:
        for st in COUNTY:
            await upsert_station(conn, st.id, st.name, st.township_code)
            for code, name in st.communities:
                covered_by = None if code in UNCOVERED else st.id
                await upsert_community(conn, code, name, st.township_code, covered_by)
        integration = await create_integration(
            conn,
            "demo-grid-platform",
            callback_secret_key=callback_secret_key,
            reissue=True,
        )
        _, operator_token = await create_operator(conn, "demo-operator", reissue=True)
    stations: dict[str, Any] = {}
    async with transaction_in("station_worker", database_url) as conn:
        for st in COUNTY:
            manager = await create_staff(
                conn,
                st.id,
                "station_manager",
                f"Manager of {st.name}",
                f"{st.id}-manager",
                reissue=True,
            )
            workers = {
                f"{st.id}-sw{i}": await create_staff(
                    conn,
                    st.id,
                    "social_worker",
                    f"Social worker {i}",
                    f"{st.id}-sw{i}",
                    reissue=True,
                )
                for i in (1, 2)
            }
            for i, worker_id in enumerate(workers):
                # Between them, the two cover every category; each carries up to 8 orders.
                await create_worker(conn, worker_id, st.id, list(Category)[i::2], capacity=8)
            stations[st.id] = {"manager_token": manager, "social_worker_tokens": workers}
    async with transaction_in("audit", database_url) as conn:
        supervisor = await create_reader(
            conn, "county-supervisor", "County evaluator", "evaluator", reissue=True
        )
        for st in COUNTY:
            stations[st.id]["audit_token"] = await create_reader(
                conn,
                f"{st.id}-manager",
                f"Manager of {st.name}",
                "station_manager",
                st.id,
                reissue=True,
            )
            # One station, one supervisor (一站一督导): reviews and supervision in the audit.
            stations[st.id]["audit_supervisor_token"] = await create_reader(
                conn,
                f"{st.id}-supervisor",
                f"Supervisor of {st.name}",
                "supervisor",
                stations=[st.id],
                reissue=True,
            )
    return {
        "integration": {
            "id": integration.id,
            "api_key": integration.key,
            "callback_secret": integration.callback_secret,
        },
        "operator_token": operator_token,
        "stations": stations,
        "audit_supervisor_token": supervisor,
    }


def write_credentials(path: Path, credentials: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials, indent=2))
    path.chmod(0o600)


async def run_traffic(
    urls: dict[str, str], credentials: dict[str, Any], *, interval_s: float, count: int | None
) -> None:
    """Submit a request every ``interval_s``, report when it reaches station and audit, then
    take it around the loop (served, return visit, closed; some sent back for redo)."""
    rng = random.Random()
    sent = 0
    following: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=10) as http:
        while count is None or sent < count:
            body = random_request(rng)
            started = time.perf_counter()
            resp = await _submit(http, urls["dispatch_center"], credentials, body)
            sent += 1
            if resp.status_code >= 300:
                say(f"  intake answered {resp.status_code}: {resp.text[:200]}")
            else:
                task = asyncio.create_task(_follow(http, urls, credentials, resp.json(), started))
                following.add(task)
                task.add_done_callback(following.discard)
            await asyncio.sleep(interval_s)
        # A counted run ends once its orders have gone around the loop.
        await asyncio.gather(*list(following))


async def _submit(
    http: httpx.AsyncClient, center: str, credentials: dict[str, Any], body: dict[str, Any]
) -> httpx.Response:
    """POST one intake request until the center answers below 500; the same body (the same
    external_id) each time, so a retry of a request that did get through is no duplicate."""
    backoff = 1.0
    while True:
        try:
            resp = await http.post(
                f"{center}/v1/requests",
                json=body,
                headers={"X-API-Key": credentials["integration"]["api_key"]},
            )
            if resp.status_code < 500:
                return resp
            problem = f"answered {resp.status_code}"
        except httpx.TransportError as exc:
            problem = f"unreachable ({type(exc).__name__})"
        say(f"  dispatch center {problem}; retrying in {backoff:g} s")
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


async def _follow(
    http: httpx.AsyncClient,
    urls: dict[str, str],
    credentials: dict[str, Any],
    created: dict[str, Any],
    started: float,
) -> None:
    order_id = created["order_id"]
    try:
        center = await http.get(
            f"{urls['dispatch_center']}/v1/requests/{order_id}",
            headers={"X-API-Key": credentials["integration"]["api_key"]},
        )
    except httpx.TransportError as exc:
        say(f"order {order_id[:8]}: dispatch center unreachable ({type(exc).__name__})")
        return
    station_id = center.json().get("station_id")
    if station_id is None:
        say(f"order {order_id[:8]} {created['status']}: waits at the center")
        return
    token = credentials["stations"][station_id]["manager_token"]
    at_station = await _poll(
        http, f"{urls['station_worker']}/v1/orders/{order_id}", token, lambda _: True
    )
    trail = await _poll(
        http,
        f"{urls['audit']}/v1/orders/{order_id}/trail",
        credentials["audit_supervisor_token"],
        lambda body: len(body) >= 3,
    )
    say(
        f"order {order_id[:8]} -> {station_id}: at station after "
        f"{_ms(at_station, started)}, audit trail of 3 events after {_ms(trail, started)}"
    )
    if at_station is not None:
        await around_the_loop(http, urls, credentials, order_id, station_id, random.Random())


async def _poll(
    http: httpx.AsyncClient, url: str, token: str, done: Any, timeout_s: float = 15
) -> float | None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        with contextlib.suppress(httpx.TransportError):
            resp = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            if resp.status_code == 200 and done(resp.json()):
                return time.perf_counter()
        await asyncio.sleep(0.02)
    return None


def _ms(at: float | None, started: float) -> str:
    return "(not within 15 s)" if at is None else f"{(at - started) * 1000:.0f} ms"
