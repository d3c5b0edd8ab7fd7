"""``swdispatch simulate``: a synthetic county's traffic through the real APIs.

Integrations submit requests at a fixed rate; simulated station staff work each station's
queue through the station API: accept after a delay drawn from an exponential distribution,
reject a share, assign the first suggested worker, start and complete. A progress line shows
the counts as it runs; the end prints a summary and checks that every accepted order reached
the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared.domain import Category
from swdispatch import county as county_mod
from swdispatch.county import County

_UNIX_OFFSET = time.time() - time.perf_counter()


@dataclass(frozen=True)
class StaffBehaviour:
    accept_delay_s: float = 2.0
    """Mean of the exponential delay before staff act on a newly queued order."""
    reject_share: float = 0.05
    work_delay_s: float = 1.0
    """Mean delay between assigning, starting and completing."""
    poll_interval_s: float = 0.5
    """How often each station's manager looks at the queue."""


@dataclass
class Tally:
    submitted: int = 0
    dispatched: int = 0
    accepted: int = 0
    rejected: int = 0
    assigned: int = 0
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    accepted_orders: set[str] = field(default_factory=set)
    completed_at: list[float] = field(default_factory=list)
    intake_latencies_s: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    """Each created order's intended send time, as Unix time (to compare with the database's
    timestamps)."""

    def error(self, what: str) -> None:
        self.errors[what] += 1


class StaffUnavailable(RuntimeError):
    """The station worker has no action API (issue 4 not deployed)."""


class Simulation:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        urls: dict[str, str],
        credentials: dict[str, Any],
        county: County,
        behaviour: StaffBehaviour,
        *,
        seed: int | None = None,
    ) -> None:
        self.http = http
        self.urls = urls
        self.credentials = credentials
        self.county = county
        self.behaviour = behaviour
        self.rng = random.Random(seed)
        self.tally = Tally()
        self._seen: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def request(self, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        """One HTTP call: its status and JSON body (None when the body is not JSON)."""
        async with self.http.request(method, url, **kw) as resp:
            body = await resp.read()
            try:
                return resp.status, json.loads(body) if body else None
            except ValueError:
                return resp.status, None

    # --- intake -------------------------------------------------------------------------

    async def submit(self, intended_at: float) -> None:
        """Send one request; the latency counts from ``intended_at`` (open loop)."""
        body = county_mod.request(self.rng, self.county)
        try:
            status, created = await self.request(
                "POST",
                f"{self.urls['dispatch_center']}/v1/requests",
                json=body,
                headers={"X-API-Key": self.credentials["integration"]["api_key"]},
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(f"intake {type(exc).__name__}")
            return
        self.tally.intake_latencies_s.append(time.perf_counter() - intended_at)
        if status != 201:
            self.tally.error(f"intake {status}")
            return
        self.tally.submitted += 1
        self.tally.sent_at[created["order_id"]] = intended_at + _UNIX_OFFSET
        if created["status"] == "dispatched":
            self.tally.dispatched += 1

    async def submit_at_rate(self, rate_per_s: float, duration_s: float) -> None:
        """Open loop: request i is due at start + i / rate, however slow earlier ones are."""
        start = time.perf_counter()
        total = int(rate_per_s * duration_s)
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = start + i / rate_per_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.submit(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)

    # --- staff --------------------------------------------------------------------------

    def _manager(self, station_id: str) -> dict[str, str]:
        token = self.credentials["stations"][station_id]["manager_token"]
        return {"Authorization": f"Bearer {token}"}

    def _worker(self, station_id: str, worker_id: str) -> dict[str, str]:
        token = self.credentials["stations"][station_id]["social_worker_tokens"].get(worker_id)
        if token is None:  # a worker of another deployment: the manager acts for them
            return self._manager(station_id)
        return {"Authorization": f"Bearer {token}"}

    async def register_workers(self) -> None:
        """Each station's social workers with a few skills each; raises StaffUnavailable when
        the station worker has no workers API."""
        categories = list(Category)
        for station_id in self.county.station_ids:
            for worker_id in self.county.worker_ids(station_id):
                skills = self.rng.sample(categories, k=min(4, len(categories)))
                status, body = await self.request(
                    "POST",
                    f"{self.urls['station_worker']}/v1/stations/{station_id}/workers",
                    json={"worker_id": worker_id, "skills": skills, "capacity": 100},
                    headers=self._manager(station_id),
                )
                if status in (404, 405):
                    raise StaffUnavailable(f"POST /v1/stations/{{id}}/workers answered {status}")
                if status >= 300:
                    raise RuntimeError(f"registering {worker_id}: {status} {body}")

    async def work_stations(self) -> None:
        """Every station's manager polls the queue for new orders until cancelled."""
        await asyncio.gather(*(self._watch_queue(s) for s in self.county.station_ids))

    async def _watch_queue(self, station_id: str) -> None:
        url = f"{self.urls['station_worker']}/v1/stations/{station_id}/orders"
        while True:
            cursor: str | None = None
            for _ in range(20):
                params: dict[str, Any] = {"status": "dispatched", "limit": 100}
                if cursor:
                    params["cursor"] = cursor
                try:
                    status, page = await self.request(
                        "GET", url, params=params, headers=self._manager(station_id)
                    )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.tally.error(f"queue {type(exc).__name__}")
                    break
                if status != 200:
                    self.tally.error(f"queue {status}")
                    break
                for item in page["orders"]:
                    key = (item["order_id"], item["dispatch_no"])
                    # Only this simulation's orders (the queue may hold others'); one whose
                    # intake answer has not come back yet is picked up on the next look.
                    if key not in self._seen and item["order_id"] in self.tally.sent_at:
                        self._seen.add(key)
                        task = asyncio.create_task(self._handle(station_id, item["order_id"]))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            await asyncio.sleep(self.behaviour.poll_interval_s)

    async def _act(self, station_id: str, order_id: str, action: str, **kw: Any) -> Any:
        headers = kw.pop("headers", None) or self._manager(station_id)
        url = f"{self.urls['station_worker']}/v1/orders/{order_id}/{action}"
        try:
            status, body = await self.request("POST", url, headers=headers, **kw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(f"{action} {type(exc).__name__}")
            return None
        if status != 200:
            self.tally.error(f"{action} {status}")
            return None
        return body

    async def _pause(self, mean_s: float) -> None:
        await asyncio.sleep(self.rng.expovariate(1 / mean_s) if mean_s > 0 else 0)

    async def _handle(self, station_id: str, order_id: str) -> None:
        b = self.behaviour
        await self._pause(b.accept_delay_s)
        if self.rng.random() < b.reject_share:
            if await self._act(
                station_id, order_id, "reject", json={"reason_code": "no_capacity", "note": None}
            ):
                self.tally.rejected += 1
            return
        if not await self._act(station_id, order_id, "accept"):
            return
        self.tally.accepted += 1
        self.tally.accepted_orders.add(order_id)
        await self._pause(b.work_delay_s)
        try:
            status, suggestions = await self.request(
                "GET",
                f"{self.urls['station_worker']}/v1/orders/{order_id}/suggested-workers",
                headers=self._manager(station_id),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(f"suggested-workers {type(exc).__name__}")
            return
        if status != 200 or not suggestions:
            self.tally.error(f"suggested-workers {status}" if status != 200 else "no suggestion")
            return
        worker_id = suggestions[0]["worker_id"]
        if not await self._act(station_id, order_id, "assign", json={"worker_id": worker_id}):
            return
        self.tally.assigned += 1
        await self._pause(b.work_delay_s)
        worker = self._worker(station_id, worker_id)
        if not await self._act(station_id, order_id, "start", headers=worker):
            return
        await self._pause(b.work_delay_s)
        done = await self._act(
            station_id,
            order_id,
            "complete",
            headers=worker,
            json={
                "outcome": "served",
                "service_minutes": self.rng.randint(20, 180),
                "summary": "Home visit; needs met for now.",
                "follow_up_needed": self.rng.random() < 0.2,
            },
        )
        if done:
            self.tally.completed += 1
            self.tally.completed_at.append(time.perf_counter())

    async def settle(self, timeout_s: float) -> None:
        """Wait for staff still working on orders (at most ``timeout_s``)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    # --- audit --------------------------------------------------------------------------

    async def breaches(self) -> float:
        """Breaches the audit service has counted (``swd_sla_breaches_total``)."""
        try:
            async with self.http.get(f"{self.urls['audit']}/metrics") as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return float("nan")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("swd_sla_breaches_total{")
        )

    async def missing_from_audit(self, timeout_s: float = 30) -> list[str]:
        """Accepted orders whose trail has no ``order.accepted`` (after waiting up to
        ``timeout_s`` for the audit consumer to catch up)."""
        token = self.credentials["audit_supervisor_token"]
        headers = {"Authorization": f"Bearer {token}"}
        missing = set(self.tally.accepted_orders)
        deadline = time.monotonic() + timeout_s
        limit = asyncio.Semaphore(16)

        async def audited(order_id: str) -> bool:
            async with limit:
                status, trail = await self.request(
                    "GET", f"{self.urls['audit']}/v1/orders/{order_id}/trail", headers=headers
                )
            return status == 200 and any(e["event_type"] == "order.accepted" for e in trail)

        while missing:
            ids = sorted(missing)
            found = await asyncio.gather(*(audited(i) for i in ids))
            missing -= {i for i, ok in zip(ids, found, strict=True) if ok}
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        return sorted(missing)


def client(connections: int = 200) -> aiohttp.ClientSession:
    """The load generator's HTTP client (aiohttp: httpx's pool slows down sharply with many
    requests in flight, which would make the client the bottleneck)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def progress_line(sim: Simulation, elapsed_s: float, breaches: float) -> str:
    t = sim.tally
    return (
        f"{elapsed_s:6.1f}s  submitted {t.submitted:6d}  dispatched {t.dispatched:6d}  "
        f"accepted {t.accepted:6d}  completed {t.completed:6d}  rejected {t.rejected:5d}  "
        f"breaches {breaches:5.0f}  errors {sum(t.errors.values()):4d}"
    )


async def run(
    urls: dict[str, str],
    credentials: dict[str, Any],
    county: County,
    behaviour: StaffBehaviour,
    *,
    rate_per_s: float,
    duration_s: float,
    settle_s: float = 30,
    out: Any = sys.stdout,
) -> dict[str, Any]:
    """Run the simulation, printing progress to ``out``; return the summary."""
    async with client() as http:
        sim = Simulation(http, urls, credentials, county, behaviour)
        staff_available = True
        try:
            await sim.register_workers()
        except StaffUnavailable as exc:
            staff_available = False
            print(f"station actions unavailable ({exc}): simulating intake only", file=out)
        staff = asyncio.create_task(sim.work_stations()) if staff_available else None
        started = time.perf_counter()
        is_tty = bool(getattr(out, "isatty", lambda: False)())

        async def show_progress() -> None:
            while True:
                await asyncio.sleep(1)
                line = progress_line(sim, time.perf_counter() - started, await sim.breaches())
                print(("\r" + line) if is_tty else line, end="" if is_tty else "\n", file=out)
                out.flush()

        progress = asyncio.create_task(show_progress())
        try:
            await sim.submit_at_rate(rate_per_s, duration_s)
            if staff is not None:
                # Let staff pick up the last orders, then finish what they started.
                await asyncio.sleep(min(settle_s, behaviour.accept_delay_s * 3 + 1))
                await sim.settle(settle_s)
        finally:
            progress.cancel()
            if staff is not None:
                staff.cancel()
        elapsed = time.perf_counter() - started
        missing = await sim.missing_from_audit() if staff_available else []
        summary = {
            "duration_s": round(elapsed, 1),
            "rate_per_s": rate_per_s,
            "submitted": sim.tally.submitted,
            "dispatched": sim.tally.dispatched,
            "accepted": sim.tally.accepted,
            "rejected": sim.tally.rejected,
            "assigned": sim.tally.assigned,
            "completed": sim.tally.completed,
            "breaches": await sim.breaches(),
            "errors": dict(sim.tally.errors),
            "staff_simulated": staff_available,
            "accepted_missing_from_audit": missing,
        }
    if is_tty:
        print(file=out)
    return summary


def print_summary(summary: dict[str, Any], out: Any = sys.stdout) -> None:
    print("\nsummary", file=out)
    for key, value in summary.items():
        if key == "accepted_missing_from_audit":
            continue
        print(f"  {key:22} {value}", file=out)
    missing = summary["accepted_missing_from_audit"]
    if not summary["staff_simulated"]:
        print("  audit check            skipped: no station actions to check", file=out)
    elif missing:
        print(
            f"  audit check            FAILED: {len(missing)} accepted orders not in the"
            f" audit trail, e.g. {missing[:3]}",
            file=out,
        )
    else:
        print(
            f"  audit check            ok: all {summary['accepted']} accepted orders are in"
            " the audit trail",
            file=out,
        )
