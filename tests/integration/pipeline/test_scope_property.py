"""A property of scopes, over every operator, station-staff and reader endpoint of the three
OpenAPI documents, on the real stack: requests by a principal of county Y (its operator, its
station's manager and social worker, its reader roles), naming county X's objects and values
in the path, the query and the body (and Y's own objects with X's values), never change
anything of X and never show X's data.

"Anything of X": every row that belongs to or names X's station, township, communities, staff
and orders, in the three schemas (a fingerprint taken before and after each request). "X's
data": X's order ids, its residents' personal data, its station's, communities' and staff's
names, wherever the request itself did not name them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.admin import create_reader
from services.station_worker.admin import create_staff, create_worker
from shared.db import transaction_in
from shared.events import DEPLOYMENT_ID
from tests.conftest import RunningStack
from tests.factories.requests import request_body
from tests.helpers import eventually
from tests.integration.dispatch_center.center_support import operator_headers, submit

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:6]
X_STATION, Y_STATION = f"st-px-{TAG}", f"st-py-{TAG}"
X_TOWNSHIP, Y_TOWNSHIP = f"TS-PX-{TAG}", f"TS-PY-{TAG}"
X_COMMUNITIES = (f"PX-ONE-{TAG}", f"PX-NONE-{TAG}")
Y_COMMUNITY = f"PY-ONE-{TAG}"
X_NAMES = (f"县甲社工站{TAG}", f"县甲社区{TAG}", f"县甲社工{TAG}", f"县甲站长{TAG}")
# Endpoints a request cannot end (a stream) or that are nobody's scope (health, intake: an
# integration's own orders, by its key).
SKIPPED = ("/stream", "/healthz", "/readyz", "/v1/requests")

# Every endpoint a county's people call, with the scope rule it applies. The test fails when
# an endpoint is added without a line here (and so without being tried).
OWN_ORDER = (
    "an order of the principal's stations (the operator's: or held in their townships); else 404"
)
ENDPOINTS: dict[tuple[str, str, str], str] = {
    ("dispatch_center", "GET", "/v1/operator/orders"): "lists the scope's orders only",
    ("dispatch_center", "GET", "/v1/operator/orders/{order_id}"): OWN_ORDER,
    ("dispatch_center", "POST", "/v1/operator/orders/{order_id}/redispatch"): OWN_ORDER
    + "; body.station_id an active station of the scope, else 422",
    ("dispatch_center", "POST", "/v1/operator/orders/{order_id}/cancel"): OWN_ORDER,
    ("dispatch_center", "POST", "/v1/operator/orders/{order_id}/return-visit"): OWN_ORDER,
    ("dispatch_center", "POST", "/v1/operator/orders/{order_id}/send-back"): OWN_ORDER
    + "; body.station_id (if given) an active station of the scope, else 422",
    ("dispatch_center", "GET", "/v1/operator/stations"): "lists the scope's stations only",
    ("dispatch_center", "PUT", "/v1/operator/stations/{station_id}"): "a station of the scope,"
    " else 404; body.township_code a township the scope's stations serve, else 422",
    ("dispatch_center", "GET", "/v1/operator/coverage"): "the townships the scope serves only",
    ("dispatch_center", "PUT", "/v1/operator/communities/{code}"): "a community in a township"
    " of the scope, else 404; body.township_code, station_id, fallbacks in the scope, else 422",
    ("dispatch_center", "PUT", "/v1/operator/overrides/{township_code}/{category}"): "a township"
    " of the scope, else 404; body.station_id a station of the scope, else 422",
    ("dispatch_center", "GET", "/v1/operator/operators"): "unscoped operators only, else 403",
    ("dispatch_center", "POST", "/v1/operator/operators/{operator_id}/revoke"): "unscoped"
    " operators only, else 403",
    ("dispatch_center", "GET", "/v1/operator/integrations"): "unscoped operators only, else 403",
    ("dispatch_center", "POST", "/v1/operator/integrations"): "unscoped operators only, else 403",
    ("dispatch_center", "POST", "/v1/operator/integrations/{integration_id}/revoke"): "unscoped"
    " operators only, else 403",
    ("station_worker", "GET", "/v1/me"): "the caller's own account",
    (
        "station_worker",
        "GET",
        "/v1/stations/{station_id}/orders",
    ): "the caller's station, else 403/404",
    (
        "station_worker",
        "GET",
        "/v1/orders/{order_id}",
    ): "an order at the caller's station, else 404",
    ("station_worker", "POST", "/v1/orders/{order_id}/accept"): "an order at the caller's station",
    ("station_worker", "POST", "/v1/orders/{order_id}/reject"): "an order at the caller's station",
    ("station_worker", "POST", "/v1/orders/{order_id}/assign"): "an order at the caller's"
    " station; body.worker_id a social worker of that station, else 422",
    ("station_worker", "POST", "/v1/orders/{order_id}/reassign"): "as assign",
    ("station_worker", "POST", "/v1/orders/{order_id}/complete"): "the assigned worker's order",
    ("station_worker", "POST", "/v1/orders/{order_id}/start"): "the assigned worker's order",
    ("station_worker", "GET", "/v1/stations/{station_id}/follow-ups"): "the caller's station",
    (
        "station_worker",
        "POST",
        "/v1/orders/{order_id}/follow-ups",
    ): "the follow-up's worker's order",
    ("station_worker", "POST", "/v1/orders/{order_id}/follow-ups/reassign"): "an order at the"
    " manager's station; body.worker_id a social worker of that station, else 422",
    ("station_worker", "GET", "/v1/orders/{order_id}/suggested-workers"): "an order at the"
    " manager's station; suggests that station's workers only",
    ("station_worker", "GET", "/v1/stations/{station_id}/workers"): "the manager's station",
    ("station_worker", "POST", "/v1/stations/{station_id}/workers"): "the manager's station;"
    " body.worker_id a social worker of that station, else 422",
    ("audit", "GET", "/v1/orders/{order_id}/trail"): "the entries of the reader's stations'"
    " parts only; an order they never had: 404",
    ("audit", "GET", "/v1/orders/{order_id}/timeliness"): "the reader's stations' stints and"
    " rounds only; else 404",
    ("audit", "GET", "/v1/audit/verify"): "evaluators of every station only, else 403",
    ("audit", "GET", "/v1/audit/credentials"): "evaluators of every station only, else 403",
    ("audit", "GET", "/v1/reports/timeliness"): "the reader's stations' stints only",
    ("audit", "GET", "/v1/reports/evaluation"): "the reader's stations (query.station outside:"
    " 404)",
    ("audit", "POST", "/v1/reviews"): "the supervisor of the station that served the order, else"
    " 403/404",
    ("audit", "GET", "/v1/reviews"): "reviews of the reader's stations' work only",
    ("audit", "GET", "/v1/supervisions"): "supervisions of the reader's stations only",
    ("audit", "POST", "/v1/supervisions/{order_id}/close"): "the supervisor of the supervised"
    " station, else 403/404",
}


@dataclass
class World:
    x_orders: list[str] = field(default_factory=list)
    y_orders: list[str] = field(default_factory=list)
    x_staff: list[str] = field(default_factory=list)
    y_staff: list[str] = field(default_factory=list)
    x_personal: list[str] = field(default_factory=list)
    principals: dict[str, list[tuple[str, dict[str, str]]]] = field(
        default_factory=dict, repr=False
    )
    operations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict, repr=False)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def x_ids(self) -> list[str]:
        return [*self.x_orders, X_STATION, X_TOWNSHIP, *X_COMMUNITIES, *self.x_staff]

    @property
    def y_ids(self) -> list[str]:
        return [*self.y_orders, Y_STATION, Y_TOWNSHIP, Y_COMMUNITY, *self.y_staff]

    def named(self, name: str) -> tuple[list[str], list[str]]:
        """X's and Y's values a parameter or field of this name may take."""
        if "station" in name or name == "fallbacks":
            return [X_STATION], [Y_STATION]
        if "township" in name:
            return [X_TOWNSHIP], [Y_TOWNSHIP]
        if name == "code" or "community" in name:
            return list(X_COMMUNITIES), [Y_COMMUNITY]
        if "order" in name:
            # The deployment's own chain (credentials, X's staff among them) is no one's order.
            return [*self.x_orders, str(DEPLOYMENT_ID)], self.y_orders
        if "worker" in name or "staff" in name or "operator" in name or "reviewer" in name:
            return self.x_staff, self.y_staff
        if name == "integration_id":
            return self.x_ids, self.y_ids
        # Free text (a reason, a summary) is kept as written: X's ids there would be Y's words.
        return [], ["scope property"]

    def value_of(self, name: str, x_weight: int = 3) -> st.SearchStrategy[str]:
        """Mostly X's (a Y principal naming X's things), sometimes Y's own."""
        x, y = self.named(name)
        return st.sampled_from([*x * x_weight, *y]) if x else st.sampled_from(y)

    def secrets(self) -> Iterator[str]:
        yield from (*self.x_orders, *self.x_personal, *X_NAMES, *self.x_staff)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _put(http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: Any) -> None:
    resp = await http.put(url, json=body | {"reason": "scope property"}, headers=headers)
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
async def world(stack: RunningStack, http: httpx.AsyncClient) -> World:
    w = World()
    center = stack.urls["dispatch_center"]
    admin = operator_headers(stack)
    for station, township, name in (
        (X_STATION, X_TOWNSHIP, X_NAMES[0]),
        (Y_STATION, Y_TOWNSHIP, f"县乙社工站{TAG}"),
    ):
        body = {"name": name, "township_code": township, "active": True}
        await _put(http, f"{center}/v1/operator/stations/{station}", body, admin)
    for code, township, station in (
        (X_COMMUNITIES[0], X_TOWNSHIP, X_STATION),
        (X_COMMUNITIES[1], X_TOWNSHIP, None),
        (Y_COMMUNITY, Y_TOWNSHIP, Y_STATION),
    ):
        body = {
            "name": X_NAMES[1] if township == X_TOWNSHIP else f"县乙社区{TAG}",
            "township_code": township,
            "station_id": station,
            "fallbacks": [],
        }
        await _put(http, f"{center}/v1/operator/communities/{code}", body, admin)
    await _put(
        http,
        f"{center}/v1/operator/overrides/{X_TOWNSHIP}/disability_rehabilitation",
        {"station_id": X_STATION},
        admin,
    )

    from services.dispatch_center.admin import create_operator

    async with transaction_in("dispatch_center", stack.database_url) as conn:
        _, y_operator = await create_operator(conn, f"y-op-{TAG}", stations=[Y_STATION])
        _, y_viewer = await create_operator(conn, f"y-view-{TAG}", "viewer", stations=[Y_STATION])
    tokens: dict[str, str] = {}
    async with transaction_in("station_worker", stack.database_url) as conn:
        for who, station, role, name in (
            ("x-mgr", X_STATION, "station_manager", X_NAMES[3]),
            ("x-sw", X_STATION, "social_worker", X_NAMES[2]),
            ("y-mgr", Y_STATION, "station_manager", f"县乙站长{TAG}"),
            ("y-sw", Y_STATION, "social_worker", f"县乙社工{TAG}"),
        ):
            staff_id = f"{who}-{TAG}"
            tokens[who] = await create_staff(conn, station, role, name, staff_id)  # type: ignore[arg-type]
            (w.x_staff if station == X_STATION else w.y_staff).append(staff_id)
            if role == "social_worker":
                await create_worker(conn, staff_id, station, ["elder_care"], 10)
    async with transaction_in("audit", stack.database_url) as conn:
        readers = {
            role: await create_reader(
                conn,
                f"y-{role}-{TAG}",
                f"county Y {role}",
                role,  # type: ignore[arg-type]
                Y_STATION if role == "station_manager" else None,
                stations=() if role == "station_manager" else (Y_STATION,),
            )
            for role in ("station_manager", "supervisor", "evaluator")
        }
    w.principals = {
        "dispatch_center": [("operator", _bearer(y_operator)), ("viewer", _bearer(y_viewer))],
        "station_worker": [
            ("manager", _bearer(tokens["y-mgr"])),
            ("worker", _bearer(tokens["y-sw"])),
        ],
        "audit": [(role, _bearer(token)) for role, token in readers.items()],
    }

    x_personal: set[str] = set()
    y_personal: set[str] = set()
    for community, into in ((X_COMMUNITIES[0], w.x_orders),) * 3 + (
        (X_COMMUNITIES[1], w.x_orders),
        (Y_COMMUNITY, w.y_orders),
        (Y_COMMUNITY, w.y_orders),
    ):
        township = Y_TOWNSHIP if community == Y_COMMUNITY else X_TOWNSHIP
        body = request_body(category="elder_care")
        body["location"] |= {"township_code": township, "community_code": community}
        created = await submit(http, center, stack.api_key, body)
        into.append(str(created["order_id"]))
        personal = {
            value
            for value in (
                body["beneficiary"].get("name"),
                body["beneficiary"].get("phone"),
                body["reporter"].get("name"),
                body["reporter"].get("phone"),
                body["location"].get("address"),
            )
            if value
        }
        (x_personal if township == X_TOWNSHIP else y_personal).update(personal)

    w.x_personal = sorted(x_personal - y_personal)  # (the generator's names may repeat)

    # X's station takes its first order and gives it to its social worker.
    station = stack.urls["station_worker"]
    x_mgr = _bearer(tokens["x-mgr"])
    first = w.x_orders[0]

    async def arrived() -> bool:
        return (await http.get(f"{station}/v1/orders/{first}", headers=x_mgr)).status_code == 200

    await eventually(arrived)
    assert (
        await http.post(f"{station}/v1/orders/{first}/accept", headers=x_mgr)
    ).status_code == 200
    assigned = await http.post(
        f"{station}/v1/orders/{first}/assign", json={"worker_id": f"x-sw-{TAG}"}, headers=x_mgr
    )
    assert assigned.status_code == 200, assigned.text

    async def audited() -> bool:
        async with transaction_in("audit", stack.database_url) as conn:
            found = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE order_id = ANY($1::uuid[])",
                [*w.x_orders, *w.y_orders],
            )
        return bool(found == len(w.x_orders) + len(w.y_orders))

    await eventually(audited)

    for service in ("dispatch_center", "station_worker", "audit"):
        schema = (await http.get(f"{stack.urls[service]}/openapi.json")).json()
        w.schemas[service] = schema
        for path, ops in schema["paths"].items():
            if any(skip in path for skip in SKIPPED):
                continue
            for method, op in ops.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    w.operations[(service, method.upper(), path)] = op
    return w


# -- What belongs to X ---------------------------------------------------------------------

FINGERPRINT = """
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(',', id, status, station_id, version::text), ';' ORDER BY id)
     FROM dispatch_center.orders
     WHERE id = ANY($1::uuid[]) OR station_id = $2 OR township_code = $3),
  (SELECT string_agg(concat_ws(',', id, name, township_code, active::text), ';' ORDER BY id)
     FROM dispatch_center.stations WHERE id = $2 OR township_code = $3),
  (SELECT string_agg(concat_ws(',', code, name, township_code), ';' ORDER BY code)
     FROM dispatch_center.communities WHERE code = ANY($4) OR township_code = $3),
  (SELECT string_agg(concat_ws(',', community_code, station_id), ';' ORDER BY community_code)
     FROM dispatch_center.coverage WHERE community_code = ANY($4) OR station_id = $2),
  (SELECT string_agg(concat_ws(',', community_code, position::text, station_id), ';'
                     ORDER BY community_code, position)
     FROM dispatch_center.coverage_fallbacks WHERE community_code = ANY($4) OR station_id = $2),
  (SELECT string_agg(concat_ws(',', township_code, category, station_id), ';'
                     ORDER BY township_code, category)
     FROM dispatch_center.coverage_overrides WHERE township_code = $3 OR station_id = $2),
  (SELECT string_agg(concat_ws(',', order_id, status, station_id, worker_id, version::text), ';'
                     ORDER BY order_id)
     FROM station_worker.station_orders WHERE order_id = ANY($1::uuid[]) OR station_id = $2),
  (SELECT string_agg(concat_ws(',', id, station_id, role, token_hash, revoked_at::text), ';'
                     ORDER BY id)
     FROM station_worker.staff WHERE id = ANY($5) OR station_id = $2),
  (SELECT string_agg(concat_ws(',', id, station_id, capacity::text, on_duty::text,
                               skills::text), ';' ORDER BY id)
     FROM station_worker.workers WHERE id = ANY($5) OR station_id = $2),
  (SELECT count(*)::text FROM station_worker.follow_ups WHERE order_id = ANY($1::uuid[])),
  (SELECT count(*)::text FROM audit.reviews WHERE order_id = ANY($1::uuid[])),
  (SELECT count(*)::text FROM audit.supervision_closes WHERE order_id = ANY($1::uuid[]))
))"""


async def fingerprint(db: asyncpg.Pool, w: World) -> str:
    found: str = await db.fetchval(
        FINGERPRINT, w.x_orders, X_STATION, X_TOWNSHIP, list(X_COMMUNITIES), w.x_staff
    )
    return found


# -- Requests ------------------------------------------------------------------------------


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = schemas["components"]["schemas"][name]
    return schema


def values(
    spec: dict[str, Any], schema: dict[str, Any], w: World, name: str, depth: int = 0
) -> Any:
    """A strategy for values of ``schema`` (of a field called ``name``) whose strings are
    mostly county X's identifiers of the kind the name says."""
    schema = _resolve(spec, schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return st.one_of([values(spec, b, w, name, depth) for b in branches])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", 0)
        return st.integers(low, max(low, min(schema.get("maximum", low + 10), low + 10)))
    if kind == "number":
        return st.floats(0, 5)
    if kind == "array":
        return st.lists(values(spec, schema.get("items", {}), w, name, depth + 1), max_size=3)
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return st.just({})
        required = set(schema.get("required", ()))
        props = schema.get("properties", {})
        return st.fixed_dictionaries(
            {k: values(spec, v, w, k, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: values(spec, v, w, k, depth + 1) for k, v in props.items() if k not in required
            },
        )
    if schema.get("format") == "date":
        return st.sampled_from(["2026-12-31", "2027-01-15"])
    if schema.get("format") == "date-time":
        return st.sampled_from(["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"])
    return st.one_of(w.value_of(name), st.just("scope property"))


async def test_every_endpoint_has_a_scope_rule(world: World) -> None:
    assert set(world.operations) == set(ENDPOINTS)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS), ids=lambda e: f"{e[1]} {e[2]}")
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_county_y_never_changes_or_sees_county_x(
    stack: RunningStack,
    http: httpx.AsyncClient,
    db: asyncpg.Pool,
    world: World,
    endpoint: tuple[str, str, str],
    data: st.DataObject,
) -> None:
    service, method, path = endpoint
    op = world.operations[endpoint]
    role, headers = data.draw(st.sampled_from(world.principals[service]), label="principal")
    spec = world.schemas[service]
    url = path
    for p in op.get("parameters", []):
        if p["in"] == "path":
            value = data.draw(
                values(spec, p["schema"], world, p["name"])
                if "enum" in _resolve(spec, p["schema"])
                else world.value_of(p["name"], x_weight=1),
                label=p["name"],
            )
            url = url.replace("{" + p["name"] + "}", str(value))
    query = {
        p["name"]: data.draw(values(spec, p["schema"], world, p["name"]), label=p["name"])
        for p in op.get("parameters", [])
        if p["in"] == "query" and data.draw(st.booleans(), label=f"with {p['name']}")
    }
    query = {
        k: json.dumps(v) if isinstance(v, bool) else v for k, v in query.items() if v is not None
    }
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    body = (
        data.draw(values(spec, body_schema["schema"], world, "body"), label="body")
        if body_schema
        else None
    )
    before = await fingerprint(db, world)
    resp = await http.request(
        method, f"{stack.urls[service]}{url}", params=query, json=body, headers=headers
    )
    asked = f"{url} {json.dumps(query, ensure_ascii=False)} {json.dumps(body, ensure_ascii=False)}"
    what = f"{role} {method} {asked} -> {resp.status_code}"
    assert resp.status_code < 500, what + resp.text
    assert await fingerprint(db, world) == before, f"changed county X: {what}"
    shown = [s for s in world.secrets() if s in resp.text and s not in asked]
    context = [resp.text[max(0, i - 300) : i + 60] for s in shown if (i := resp.text.find(s)) >= 0]
    assert not shown, f"showed county X's {shown}: {what}: {context}"
