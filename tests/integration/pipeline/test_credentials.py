"""Every credential (an integration's key, an operator's, a staff member's and a reader's
bearer token) can expire, records its last use, and is rotated with an overlap in which the
old and the new one both work: on the real stack, made and rotated on the command line as an
administrator does."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.conftest import RunningStack
from tests.helpers import swdispatch

pytestmark = pytest.mark.integration

# A lifetime (and an overlap) that ends within the test: about two seconds.
SHORT_DAYS, SHORT_HOURS, WAIT = "0.000025", "0.0006", 2.5


@dataclass(frozen=True)
class Kind:
    name: str
    create: Callable[[str], list[str]]
    rotate: Callable[[str], list[str]]
    marker: str
    table: str
    service: str
    path: str
    header: str

    def headers(self, secret: str) -> dict[str, str]:
        return {self.header: secret if self.header == "X-API-Key" else f"Bearer {secret}"}


KINDS = [
    Kind(
        "integration",
        lambda n: ["integrations", "create", n],
        lambda i: ["integrations", "rotate-key", i, "--reason", "t"],
        "X-API-Key: ",
        "dispatch_center.integrations",
        "dispatch_center",
        f"/v1/requests/{uuid.uuid4()}",
        "X-API-Key",
    ),
    Kind(
        "operator",
        lambda n: ["operators", "create", n],
        lambda i: ["operators", "reissue-token", i, "--reason", "t"],
        "Bearer token: ",
        "dispatch_center.operators",
        "dispatch_center",
        "/v1/operator/orders?limit=1",
        "Authorization",
    ),
    Kind(
        "staff",
        lambda n: [
            *("staff", "create", "--station", "st-cred", "--name", n),
            *("--role", "station_manager", "--id", n),
        ],
        lambda i: ["staff", "reissue-token", "--id", i],
        "Bearer token: ",
        "station_worker.staff",
        "station_worker",
        "/v1/me",
        "Authorization",
    ),
    Kind(
        "reader",
        lambda n: ["audit", "readers", "create", "--name", n, "--role", "evaluator", "--id", n],
        lambda i: ["audit", "readers", "reissue-token", "--id", i],
        "Bearer ",
        "audit.readers",
        "audit",
        "/v1/reports/timeliness",
        "Authorization",
    ),
]


def _secret(done: subprocess.CompletedProcess[str], marker: str) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.split(marker)[1].split()[0]


async def _status(http: httpx.AsyncClient, stack: RunningStack, kind: Kind, secret: str) -> int:
    resp = await http.get(f"{stack.urls[kind.service]}{kind.path}", headers=kind.headers(secret))
    return resp.status_code


def _ok(status: int) -> bool:
    return status in (200, 404)  # 404: the integration's made-up request, after its key held


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_a_credential_expires_and_says_so(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool, kind: Kind
) -> None:
    name = f"cred-exp-{uuid.uuid4().hex[:6]}"
    secret = _secret(
        swdispatch(stack, *kind.create(name), "--expires-in-days", SHORT_DAYS), kind.marker
    )
    assert _ok(await _status(http, stack, kind, secret))
    used = await db.fetchval(f"SELECT last_used_at FROM {kind.table} WHERE id = $1", name)  # noqa: S608
    assert used is not None
    await asyncio.sleep(WAIT)
    resp = await http.get(f"{stack.urls[kind.service]}{kind.path}", headers=kind.headers(secret))
    assert resp.status_code == 401, resp.text
    assert "expired" in resp.json()["detail"]
    assert resp.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_a_rotation_keeps_the_old_credential_working_for_its_overlap_only(
    stack: RunningStack, http: httpx.AsyncClient, kind: Kind
) -> None:
    name = f"cred-rot-{uuid.uuid4().hex[:6]}"
    old = _secret(swdispatch(stack, *kind.create(name)), kind.marker)
    new = _secret(
        swdispatch(stack, *kind.rotate(name), "--overlap-hours", SHORT_HOURS), kind.marker
    )
    assert new != old
    assert _ok(await _status(http, stack, kind, old))
    assert _ok(await _status(http, stack, kind, new))
    await asyncio.sleep(WAIT)
    assert await _status(http, stack, kind, old) == 401
    assert _ok(await _status(http, stack, kind, new))

    # Without an overlap, the old one stops at once.
    newest = _secret(swdispatch(stack, *kind.rotate(name)), kind.marker)
    assert await _status(http, stack, kind, new) == 401
    assert _ok(await _status(http, stack, kind, newest))
