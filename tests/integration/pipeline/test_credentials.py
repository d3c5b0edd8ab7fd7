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
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningStack
from tests.helpers import eventually, swdispatch

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


async def test_every_credential_change_is_in_the_deployments_chain_of_the_trail(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    secrets = []
    operator = f"cred-trail-op-{tag}"
    secrets.append(_secret(swdispatch(stack, "operators", "create", operator,
                                      "--stations", "st-liuhe"), "Bearer token: "))  # fmt: skip
    secrets.append(
        _secret(swdispatch(stack, *KINDS[1].rotate(operator), "--overlap-hours", "1"), "Bearer ")
    )
    center = f"{stack.urls['dispatch_center']}/v1/operator"
    revoked = await http.post(
        f"{center}/operators/{operator}/revoke",
        json={"reason": "left"},
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert revoked.status_code == 204, revoked.text
    staff = f"cred-trail-staff-{tag}"
    secrets.append(_secret(swdispatch(stack, *KINDS[2].create(staff)), "Bearer token: "))
    assert swdispatch(stack, "staff", "revoke", "--id", staff).returncode == 0
    reader = f"cred-trail-rdr-{tag}"
    secrets.append(_secret(swdispatch(stack, *KINDS[3].create(reader)), "Bearer "))
    assert swdispatch(stack, "audit", "readers", "revoke", "--id", reader).returncode == 0
    integration = f"cred-trail-int-{tag}"
    secrets.append(_secret(swdispatch(stack, *KINDS[0].create(integration)), "X-API-Key: "))

    url = f"{stack.urls['audit']}/v1/audit/credentials"
    evaluator = {"Authorization": f"Bearer {stack.supervisor_token}"}
    expected = [
        ("operator.token_changed", operator, "created", "system:command-line", ["st-liuhe"]),
        ("operator.token_changed", operator, "rotated", "system:command-line", ["st-liuhe"]),
        ("operator.token_changed", operator, "revoked", "operator:demo-operator", ["st-liuhe"]),
        ("staff.token_changed", staff, "created", "system:command-line", ["st-cred"]),
        ("staff.token_changed", staff, "revoked", "system:command-line", ["st-cred"]),
        ("reader.token_changed", reader, "created", "system:command-line", None),
        ("reader.token_changed", reader, "revoked", "system:command-line", None),
        ("integration.key_changed", integration, "created", "system:command-line", None),
    ]
    ours = {operator, staff, reader, integration}

    async def recorded() -> list[tuple[Any, ...]] | None:
        entries = (await http.get(url, headers=evaluator)).json()
        found = [
            (
                e["event_type"],
                e["event"]["payload"]["credential_id"],
                e["event"]["payload"]["change"],
                f"{e['event']['actor']['kind']}:{e['event']['actor']['id']}",
                e["event"]["payload"]["stations"],
            )
            for e in entries
            if e["event"]["payload"]["credential_id"] in ours
        ]
        return found if len(found) == len(expected) else None

    found = await eventually(recorded)
    assert sorted(found, key=str) == sorted(expected, key=str)
    text = (await http.get(url, headers=evaluator)).text
    assert not [s for s in secrets if s in text]
    # Not a county's business: a reader bound to stations is refused.
    manager = _secret(
        swdispatch(stack, "audit", "readers", "create", "--name", "m", "--role",
                   "station_manager", "--station", "st-liuhe"), "Bearer ",
    )  # fmt: skip
    assert (await http.get(url, headers={"Authorization": f"Bearer {manager}"})).status_code == 403
    verify = await http.get(f"{stack.urls['audit']}/v1/audit/verify", headers=evaluator)
    assert verify.json()["ok"] is True, verify.text
