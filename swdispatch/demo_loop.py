"""The demo's closed loop: once a demo order reaches its station, the demo plays the station
(accept, assign the suggested worker, start, complete) and then the return visit (回访):

- most orders get the integration's feedback, resolved and satisfied: closed;
- some get an operator's call that reaches nobody, then one that does: closed;
- some are dissatisfied: the operator sends them back for redo (发回重办), the station redoes
  them (dispatch 2, marked redo), and the second return visit closes them;
- a few get no feedback: they close without it when the feedback timeout runs out.

Every step goes through the services' public APIs, as an integration, an operator and a
station would call them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from swdispatch.console import say

# Shares of the completed demo orders, by what their return visit does.
SATISFIED = 0.55
OPERATOR_CALLS = 0.2
SENT_BACK = 0.2  # the rest: no feedback

WAIT_S = 30.0


@dataclass
class Loop:
    """One demo order around the loop."""

    http: httpx.AsyncClient
    urls: dict[str, str]
    credentials: dict[str, Any]
    order_id: str
    station_id: str
    rng: random.Random

    @property
    def station(self) -> dict[str, Any]:
        station: dict[str, Any] = self.credentials["stations"][self.station_id]
        return station

    @property
    def short(self) -> str:
        return self.order_id[:8]

    def _bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def _manager(self) -> dict[str, str]:
        return self._bearer(self.station["manager_token"])

    @property
    def _operator(self) -> dict[str, str]:
        return self._bearer(self.credentials["operator_token"])

    @property
    def _integration(self) -> dict[str, str]:
        return {"X-API-Key": self.credentials["integration"]["api_key"]}

    async def _wait(
        self, url: str, headers: dict[str, str], done: Callable[[Any], bool]
    ) -> Any | None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                resp = await self.http.get(url, headers=headers)
                if resp.status_code == 200 and done(resp.json()):
                    return resp.json()
            await asyncio.sleep(0.2)
        return None

    async def _station_act(
        self, action: str, headers: dict[str, str] | None = None, **body: Any
    ) -> bool:
        resp = await self.http.post(
            f"{self.urls['station_worker']}/v1/orders/{self.order_id}/{action}",
            json=body or None,
            headers=headers or self._manager,
        )
        if resp.status_code != 200:
            say(f"order {self.short}: the station's {action} answered {resp.status_code}")
        return resp.status_code == 200

    async def serve(self, dispatch_no: int) -> bool:
        """The station serves dispatch ``dispatch_no``; True once the center awaits feedback."""
        queued = await self._wait(
            f"{self.urls['station_worker']}/v1/orders/{self.order_id}",
            self._manager,
            lambda o: o["dispatch_no"] == dispatch_no and o["status"] == "dispatched",
        )
        if queued is None:
            say(
                f"order {self.short}: dispatch {dispatch_no} is not in {self.station_id}'s queue"
                f" within {WAIT_S:g} s"
            )
            return False
        if not await self._station_act("accept"):
            return False
        suggested = await self.http.get(
            f"{self.urls['station_worker']}/v1/orders/{self.order_id}/suggested-workers",
            headers=self._manager,
        )
        if suggested.status_code != 200 or not suggested.json():
            say(f"order {self.short}: no worker suggested ({suggested.status_code})")
            return False
        worker_id = suggested.json()[0]["worker_id"]
        worker_token = self.station["social_worker_tokens"].get(worker_id)
        worker = self._bearer(worker_token) if worker_token else self._manager
        done = (
            await self._station_act("assign", worker_id=worker_id)
            and await self._station_act("start", worker)
            and await self._station_act(
                "complete",
                worker,
                outcome="served",
                service_minutes=self.rng.randint(20, 120),
                summary="Home visit; the need is met for now.",
                follow_up_needed=False,
            )
        )
        return done and await self._center_status("awaiting_feedback") is not None

    async def _center_status(self, status: str) -> Any | None:
        return await self._wait(
            f"{self.urls['dispatch_center']}/v1/requests/{self.order_id}",
            self._integration,
            lambda o: o["status"] == status,
        )

    async def _feedback(self, resolved: bool, satisfaction: str) -> str:
        resp = await self.http.post(
            f"{self.urls['dispatch_center']}/v1/requests/{self.order_id}/feedback",
            json={"resolved": resolved, "satisfaction": satisfaction},
            headers=self._integration,
        )
        body = resp.json()
        return str(body.get("status")) if resp.status_code == 200 else f"{resp.status_code}"

    async def _visit(self, **body: Any) -> str:
        resp = await self.http.post(
            f"{self.urls['dispatch_center']}/v1/operator/orders/{self.order_id}/return-visit",
            json=body,
            headers=self._operator,
        )
        return str(resp.json().get("status")) if resp.status_code == 200 else f"{resp.status_code}"

    async def run(self) -> None:
        if not await self.serve(1):
            return
        share = self.rng.random()
        if share < SATISFIED:
            status = await self._feedback(True, self.rng.choice(["satisfied", "very_satisfied"]))
            say(f"order {self.short}: return visit by the integration, satisfied -> {status}")
        elif share < SATISFIED + OPERATOR_CALLS:
            await self._visit(reached=False)
            status = await self._visit(reached=True, resolved=True, satisfaction="neutral")
            say(f"order {self.short}: operator called twice (reached the 2nd time) -> {status}")
        elif share < SATISFIED + OPERATOR_CALLS + SENT_BACK:
            await self._redo()
        else:
            say(f"order {self.short}: no feedback; it closes without it when the timeout ends")

    async def _redo(self) -> None:
        status = await self._feedback(False, "dissatisfied")
        say(f"order {self.short}: return visit dissatisfied -> {status}, waits for an operator")
        resp = await self.http.post(
            f"{self.urls['dispatch_center']}/v1/operator/orders/{self.order_id}/send-back",
            json={"reason": "the resident says the need is not met"},
            headers=self._operator,
        )
        if resp.status_code != 200:
            say(f"order {self.short}: send-back answered {resp.status_code}")
            return
        dispatch_no = resp.json()["dispatch_no"]
        say(f"order {self.short}: sent back for redo -> dispatch {dispatch_no}")
        if not await self.serve(dispatch_no):
            return
        status = await self._feedback(True, "satisfied")
        say(f"order {self.short}: redone; return visit satisfied -> {status}")


async def around_the_loop(
    http: httpx.AsyncClient,
    urls: dict[str, str],
    credentials: dict[str, Any],
    order_id: str,
    station_id: str,
    rng: random.Random,
) -> None:
    """Serve the demo order at its station and give it a return visit (see the module)."""
    try:
        await Loop(http, urls, credentials, order_id, station_id, rng).run()
    except (httpx.TransportError, ValueError, KeyError) as exc:
        say(f"order {order_id[:8]}: the loop stopped ({type(exc).__name__})")
