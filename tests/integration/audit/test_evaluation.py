"""The loop in the audit on the real stack: the evaluation report checked figure by figure
against a hand-computed set of orders (sent shuffled and duplicated) and against a reference
recomputed from the trail alone; reviews and supervision by the stations' supervisors; what
each reader sees; personal data kept out of the trail."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import subprocess
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from services.audit.admin import create_reader
from services.audit.domain import (
    DEFAULT_TARGETS,
    INDICATORS,
    Reader,
    StationEvaluation,
    evaluation,
    month_period,
    picked_for_review,
    project,
)
from shared.db import connect
from shared.domain import Stage
from shared.migrations import migration_files, service_migrations
from tests.conftest import RunningStack
from tests.factories.audit import SECRET, OrderScript
from tests.helpers import eventually, remember_personal_data, swdispatch
from tests.integration.audit.test_audit import manager_of, metric, publish, supervisor

pytestmark = pytest.mark.integration

A, B = "st-liuhe", "st-shaxi"
DAY = 1440


async def reader_token(stack: RunningStack, role: str, stations: list[str]) -> dict[str, str]:
    conn = await connect(stack.database_url, "audit")
    try:
        token = await create_reader(
            conn,
            f"test-{role}-{uuid.uuid4().hex[:6]}",
            f"Test {role}",
            role,  # type: ignore[arg-type]
            stations=stations,
        )
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {token}"}


def an_order_id(picked: bool, share: float) -> uuid.UUID:
    while picked_for_review(str(order_id := uuid.uuid4()), share) is not picked:
        pass
    return order_id


def served(
    base: datetime,
    station: str,
    order_id: uuid.UUID,
    *,
    accept: float,
    complete: float,
    follow_up_by: date | None = None,
) -> OrderScript:
    script = OrderScript(base, order_id=order_id).submitted().dispatched(station, 5)
    script.accepted(station, accept).assigned(station, "w1", accept + 1)
    return script.completed(station, "w1", complete, follow_up_by=follow_up_by)


def hand_computed(base: datetime, share: float) -> dict[str, OrderScript]:
    """Routine orders (deadlines from submission: accept 24 h, complete 15 days); a redo's
    deadlines: accept 60 min, complete 24 h from its send-back. Times in minutes."""
    day = base.date()
    # A: a1 on time, satisfied, followed up on time; picked for review.
    a1 = served(
        base,
        A,
        an_order_id(True, share),
        accept=60,
        complete=1000,
        follow_up_by=day + timedelta(days=5),
    )
    a1.awaiting_feedback(A, 1001).feedback(A, 1100).closed(A, 1101)
    a1.followed_up(A, "w1", 4 * DAY, day + timedelta(days=4))
    # a2 accepted late; dissatisfied, sent back; the redo accepted in time, completed late
    # (3700 > 2200 + 1440); then satisfied. Picked.
    a2 = served(base, A, an_order_id(True, share), accept=1500, complete=2000)
    a2.awaiting_feedback(A, 2001)
    a2.feedback(A, 2100, resolved=False, satisfaction="dissatisfied", source="operator")
    a2.sent_back(A, 2200).accepted(A, 2230).completed(A, "w1", 3700)
    a2.awaiting_feedback(A, 3701).feedback(A, 3800).closed(A, 3801)
    # a3 never answered; its follow-up never made (overdue). Not picked.
    a3 = served(
        base,
        A,
        an_order_id(False, share),
        accept=50,
        complete=500,
        follow_up_by=day + timedelta(days=2),
    )
    a3.awaiting_feedback(A, 501).closed(A, 501 + 7 * DAY, without_feedback=True)
    # a4 still open, past its completion deadline.
    a4 = OrderScript(base, order_id=an_order_id(False, share)).submitted().dispatched(A, 10)
    a4.accepted(A, 20).assigned(A, "w1", 30)
    # a5 sent back three times (redos 1 and 2 in time; redo 3 never accepted): supervision.
    a5 = served(base, A, an_order_id(False, share), accept=40, complete=300)
    a5.awaiting_feedback(A, 301).feedback(A, 400, resolved=False, satisfaction="dissatisfied")
    a5.sent_back(A, 500).accepted(A, 520).completed(A, "w1", 600).awaiting_feedback(A, 601)
    a5.feedback(A, 700, resolved=False, satisfaction="dissatisfied")
    a5.sent_back(A, 800).accepted(A, 810).completed(A, "w1", 900).awaiting_feedback(A, 901)
    a5.feedback(A, 1000, resolved=False, satisfaction="very_dissatisfied")
    a5.sent_back(A, 1100, supervision=True)
    # B: b1 neutral but resolved (closed), its follow-up made a day late; not picked.
    b1 = served(
        base,
        B,
        an_order_id(False, share),
        accept=30,
        complete=400,
        follow_up_by=day + timedelta(days=3),
    )
    b1.awaiting_feedback(B, 401).feedback(B, 500, satisfaction="neutral").closed(B, 501)
    b1.followed_up(B, "w1", 5 * DAY, day + timedelta(days=4))
    # b2 cancelled before its completion deadline.
    b2 = OrderScript(base, order_id=an_order_id(False, share)).submitted().dispatched(B, 10)
    b2.accepted(B, 30).cancelled(B, 100)
    return {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "a5": a5, "b1": b1, "b2": b2}


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value)


EXPECTED_A = {
    "orders": 5,
    "stints": 9,  # a1, a2 and its redo, a3, a4, a5 and its three redos
    "rejections": 0,
    "completed": 7,  # rounds: a1, a2 twice, a3, a5 three times (its 3rd redo is open)
    "accepts_on_time": 7,  # a1, a2's redo, a3, a4, a5 and its redos 1 and 2
    "accepts_late": 2,  # a2 (1500 > 1440), a5's redo 3 (never)
    "completions_on_time": 6,  # a1, a2, a3, a5 and its redos 1 and 2
    "completions_late": 3,  # a2's redo, a4 (open), a5's redo 3 (open)
    "with_feedback": 6,  # rounds answered: a1, a2 twice, a5 three times
    "satisfied": 2,  # a1, a2's redo
    "resolved": 2,
    "first_visits": 3,  # a1, a2, a5
    "first_visits_satisfied": 1,  # a1
    "send_backs": 4,  # a2's first round, a5's first three
    "supervision_opened": 1,
    "under_supervision": 1,
    "follow_ups_due": 2,
    "follow_ups_done_on_time": 1,
    "follow_ups_done_late": 0,
    "follow_ups_overdue": 1,
    "picked_for_review": 2,  # a1, a2
    "reviewed": 1,  # a1, below
}
VALUES_A = {
    "on_time_acceptance_rate": 7 / 9,
    "on_time_completion_rate": 6 / 9,
    "rejection_rate": 0.0,
    "first_visit_satisfaction_rate": 1 / 3,
    "satisfaction_rate": 2 / 6,
    "resolved_rate": 2 / 6,
    "send_back_rate": 4 / 7,
    "follow_up_on_time_rate": 1 / 2,
    "review_coverage": 1 / 2,
    "mean_timeliness_score": 4.0,
    "mean_professional_quality_score": 5.0,
    "mean_record_completeness_score": 3.0,
}
EXPECTED_B = {
    "orders": 2,
    "stints": 2,
    "rejections": 0,
    "completed": 1,
    "accepts_on_time": 2,
    "accepts_late": 0,
    "completions_on_time": 1,
    "completions_late": 0,  # b2 cancelled before its deadline: neither
    "with_feedback": 1,
    "satisfied": 0,
    "resolved": 1,
    "first_visits": 1,
    "first_visits_satisfied": 0,
    "send_backs": 0,
    "supervision_opened": 0,
    "under_supervision": 0,
    "follow_ups_due": 1,
    "follow_ups_done_on_time": 0,
    "follow_ups_done_late": 1,
    "follow_ups_overdue": 0,
    "picked_for_review": 0,
    "reviewed": 0,
}
VALUES_B = {
    "on_time_acceptance_rate": 1.0,
    "on_time_completion_rate": 1.0,
    "rejection_rate": 0.0,
    "first_visit_satisfaction_rate": 0.0,
    "satisfaction_rate": 0.0,
    "resolved_rate": 1.0,
    "send_back_rate": 0.0,
    "follow_up_on_time_rate": 0.0,
    "review_coverage": None,  # nothing picked: null, not 0 or 1
    "mean_timeliness_score": None,
    "mean_professional_quality_score": None,
    "mean_record_completeness_score": None,
}
# The center's row (evaluators only): every order dispatched in time (5 < 240 minutes); the
# return visits due: a1, a2 twice, a3 (closed without), a5 three times, b1 (8), answered 7.
EXPECTED_CENTER = {
    "orders": 7,
    "dispatches_on_time": 7,
    "dispatches_late": 0,
    "waits": 0,
    "visits_due": 8,
    "visited": 7,
}


def plain(found: list[StationEvaluation]) -> list[dict[str, Any]]:
    return [vars(s) | {"indicators": {k: vars(v) for k, v in s.indicators.items()}} for s in found]


def approximately(stations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        s
        | {"indicators": {k: v | {"value": approx(v["value"])} for k, v in s["indicators"].items()}}
        for s in stations
    ]


def check(station: dict[str, Any], counts: dict[str, int], values: dict[str, float | None]) -> None:
    assert {k: station[k] for k in counts} == counts
    for name, value in values.items():
        figure = station["indicators"][name]
        assert figure["value"] == approx(value), name
        assert figure["target"] == DEFAULT_TARGETS[name], name
        assert figure["direction"] == INDICATORS[name], name
        if value is None:
            assert figure["passed"] is None, name
        elif INDICATORS[name] == "at_least":
            assert figure["passed"] is (value >= DEFAULT_TARGETS[name]), name
        else:
            assert figure["passed"] is (value <= DEFAULT_TARGETS[name]), name


async def test_the_evaluation_report_figure_by_figure_and_from_the_trail_alone(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    audit = stack.urls["audit"]
    url = f"{audit}/v1/reports/evaluation"
    evaluator = supervisor(stack)  # the stack's county-wide reader
    share = (await http.get(url, headers=evaluator)).json()["review_share"]
    assert 0 < share < 1
    remember_personal_data(SECRET)

    base = datetime(2010, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(1500))
    orders = hand_computed(base, share)
    await publish(stack, list(orders.values()), seed=14)
    # Every figure of these orders falls within 30 days of their submission.
    window = {"from": base.isoformat(), "to": (base + timedelta(days=30)).isoformat()}

    # Reviews: the supervisor of A scores a1; nobody else may, nor twice, nor an unpicked one.
    sup_a = await reader_token(stack, "supervisor", [A, "st-chengxiang"])
    sup_b = await reader_token(stack, "supervisor", [B])
    manager_a = await manager_of(stack, A)
    reviews = f"{audit}/v1/reviews"
    scores = {"timeliness": 4, "professional_quality": 5, "record_completeness": 3}
    a1 = {"order_id": str(orders["a1"].order_id)} | scores
    assert (await http.post(reviews, json=a1, headers=manager_a)).status_code == 403
    assert (await http.post(reviews, json=a1, headers=evaluator)).status_code == 403
    assert (await http.post(reviews, json=a1, headers=sup_b)).status_code == 404
    bad = await http.post(reviews, json=a1 | {"timeliness": 6}, headers=sup_a)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "timeliness"]
    done = await http.post(reviews, json=a1 | {"comment": f"c {SECRET}"}, headers=sup_a)
    assert done.status_code == 201, done.text
    assert done.json()["professional_quality"] == 5
    assert (await http.post(reviews, json=a1, headers=sup_a)).status_code == 409
    unpicked = {"order_id": str(orders["a3"].order_id)} | scores
    assert (await http.post(reviews, json=unpicked, headers=sup_a)).status_code == 409
    open_a4 = {"order_id": str(orders["a4"].order_id)} | scores  # not completed: not picked
    assert (await http.post(reviews, json=open_a4, headers=sup_a)).status_code == 409
    picked = (await http.get(reviews, params=window, headers=sup_a)).json()
    assert sorted((p["order_id"], p["timeliness"] or 0) for p in picked) == sorted(
        [(str(orders["a1"].order_id), 4), (str(orders["a2"].order_id), 0)]
    )
    pending = await http.get(reviews, params=window | {"pending": "true"}, headers=sup_a)
    assert [p["order_id"] for p in pending.json()] == [str(orders["a2"].order_id)]
    assert (await http.get(reviews, params=window, headers=sup_b)).json() == []

    report = (await http.get(url, params=window, headers=evaluator)).json()
    stations = {s["station"]: s for s in report["stations"]}
    assert set(stations) == {A, B}
    check(stations[A], EXPECTED_A, VALUES_A)
    check(stations[B], EXPECTED_B, VALUES_B)
    assert {k: report["center"][k] for k in EXPECTED_CENTER} == EXPECTED_CENTER
    assert report["center"]["indicators"]["return_visit_rate"]["value"] == approx(7 / 8)

    # The same from the trail alone: each order's entries, projected and evaluated.
    timelines = []
    for script in orders.values():
        trail = await http.get(f"{audit}/v1/orders/{script.order_id}/trail", headers=evaluator)
        entries = trail.json()
        assert SECRET not in trail.text  # comments, plans, summaries, the review's comment
        timelines.append(project(str(script.order_id), [e["event"] for e in entries]))
    reference = evaluation(
        Reader("ref", "evaluator"), timelines, datetime.now(UTC), DEFAULT_TARGETS, share
    )
    assert plain(reference) == approximately(report["stations"])

    # Who sees what: a supervisor only their stations' orders.
    a1_url = f"{audit}/v1/orders/{orders['a1'].order_id}"
    assert (await http.get(f"{a1_url}/trail", headers=sup_b)).status_code == 404
    assert (await http.get(f"{a1_url}/timeliness", headers=sup_b)).status_code == 404
    seen = (await http.get(f"{a1_url}/trail", headers=sup_a)).json()
    assert "order.reviewed" in [e["event_type"] for e in seen]
    assert (await http.get(f"{audit}/v1/audit/verify", headers=sup_a)).status_code == 403
    own = (await http.get(url, params=window, headers=manager_a)).json()["stations"]
    assert own == [stations[A]]
    theirs = (await http.get(url, params=window, headers=sup_b)).json()["stations"]
    assert theirs == [stations[B]]
    county_b = await reader_token(stack, "evaluator", [B])  # an evaluator of B's county
    assert (await http.get(url, params=window, headers=county_b)).json()["stations"] == [
        stations[B]
    ]
    assert (await http.get(f"{audit}/v1/audit/verify", headers=county_b)).status_code == 403
    assert (
        await http.get(url, params=window | {"station": B}, headers=manager_a)
    ).status_code == 404
    one = await http.get(url, params=window | {"station": B}, headers=evaluator)
    assert one.json()["stations"] == [stations[B]]

    as_csv = await http.get(url, params=window, headers=evaluator | {"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = {r["station"]: r for r in csv.DictReader(io.StringIO(as_csv.text))}
    assert rows[A]["send_backs"] == "4"
    assert float(rows[A]["satisfaction_rate"]) == pytest.approx(2 / 6, abs=1e-6)
    assert (rows[A]["satisfaction_rate_target"], rows[A]["satisfaction_rate_pass"]) == (
        "0.9",
        "fail",
    )
    assert (rows[B]["review_coverage"], rows[B]["review_coverage_pass"]) == ("", "")
    assert rows[B]["resolved_rate_pass"] == "pass"

    # Supervision: listed for A's supervisor, closed by them with a note, once.
    a5 = str(orders["a5"].order_id)
    listed = (await http.get(f"{audit}/v1/supervisions", headers=sup_a)).json()
    assert a5 in [s["order_id"] for s in listed]
    assert a5 not in [
        s["order_id"] for s in (await http.get(f"{audit}/v1/supervisions", headers=sup_b)).json()
    ]
    close = f"{audit}/v1/supervisions/{a5}/close"
    note = {"note": f"called the family {SECRET}"}
    assert (await http.post(close, json=note, headers=sup_b)).status_code == 404
    assert (await http.post(close, json=note, headers=manager_a)).status_code == 403
    assert (await http.post(close, json={"note": ""}, headers=sup_a)).status_code == 422
    closed = await http.post(close, json=note, headers=sup_a)
    assert closed.status_code == 200, closed.text
    assert closed.json()["supervision_closed_at"] is not None
    assert (await http.post(close, json=note, headers=sup_a)).status_code == 409
    assert a5 not in [
        s["order_id"] for s in (await http.get(f"{audit}/v1/supervisions", headers=sup_a)).json()
    ]
    after = (await http.get(url, params=window | {"station": A}, headers=sup_a)).json()
    (a,) = after["stations"]
    assert (a["supervision_opened"], a["under_supervision"]) == (1, 0)

    # The order's timeliness shows its redos against their own deadlines and its follow-ups.
    t = (await http.get(f"{audit}/v1/orders/{a5}/timeliness", headers=sup_a)).json()
    assert (t["status"], t["send_backs"]) == ("dispatched", 3)
    assert [(r["accept"]["outcome"], r["complete"]["outcome"]) for r in t["redos"]] == [
        ("met", "met"),
        ("met", "met"),
        ("breached", "breached"),
    ]
    a3 = (
        await http.get(f"{audit}/v1/orders/{orders['a3'].order_id}/timeliness", headers=sup_a)
    ).json()
    assert a3["status"] == "closed_without_feedback"
    assert [f["outcome"] for f in a3["follow_ups"]] == ["breached"]

    # The chains, with the audit's own entries among the events, still verify.
    verified = (await http.get(f"{audit}/v1/audit/verify", headers=evaluator)).json()
    ours = {str(s.order_id) for s in orders.values()}
    assert not [b for b in verified["broken"] if b["order_id"] in ours]


def test_supervisors_are_created_on_the_command_line_with_their_stations(
    stack: RunningStack,
) -> None:
    def create(*args: str) -> subprocess.CompletedProcess[str]:
        return swdispatch(stack, "audit", "readers", "create", "--name", "督导", *args)

    assert create("--role", "supervisor").returncode != 0
    assert create("--role", "station_manager", "--station", A, "--stations", A).returncode != 0
    county = create("--role", "evaluator", "--stations", f"{A},{B}")
    assert county.returncode == 0, county.stderr
    made = create("--role", "supervisor", "--stations", f"{A},{B}")
    assert made.returncode == 0, made.stderr
    assert "Authorization: Bearer swda" in made.stdout


async def test_a_redos_deadline_and_a_follow_up_passing_count_as_breaches_at_once(
    stack: RunningStack, http: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    yesterday = now.date() - timedelta(days=1)
    here = f"st-test-{uuid.uuid4().hex[:8]}"  # a station of its own: its gauges are this order's
    # Served, though never assigned, before its assign deadline, 15 s from submission, passes;
    # sent back at 16 s, the redo to be accepted within 3 s of that.
    quick = {Stage.DISPATCH: 240, Stage.ACCEPT: 1440, Stage.ASSIGN: 0.25, Stage.COMPLETE: 21600}
    order = OrderScript(now, deadlines_min=quick).submitted().dispatched(here, 0.01)
    order.accepted(here, 0.02).completed(here, "w1", 0.03)
    # Another, served with a follow-up due yesterday, never made.
    owed = OrderScript(now).submitted().dispatched(here, 0.01)
    owed.accepted(here, 0.02).assigned(here, "w1", 0.03)
    owed.completed(here, "w1", 0.04, follow_up_by=yesterday).awaiting_feedback(here, 0.04)
    await publish(stack, [order, owed], seed=2)
    served = len(order.events)
    order.awaiting_feedback(here, 0.04).feedback(here, 0.05, resolved=False)
    order.sent_back(here, 16 / 60, accept_min=0.05)
    redo = OrderScript(now, order_id=order.order_id)
    redo.events = order.events[served:]
    await asyncio.sleep(max((now + timedelta(seconds=16) - datetime.now(UTC)).total_seconds(), 0))
    await publish(stack, [redo], seed=2)
    overdue = {"station": here, "status": "dispatched"}
    metrics_url = f"{stack.urls['audit']}/metrics"

    async def breaches() -> list[tuple[str, str, int]] | None:
        rows = await db.fetch(
            """SELECT order_id, stage, round FROM audit.breaches
               WHERE order_id = ANY($1::uuid[]) ORDER BY 2, 3""",
            [order.order_id, owed.order_id],
        )
        found = [(str(r["order_id"]), r["stage"], r["round"]) for r in rows]
        return found if len(found) >= 2 else None

    # Neither the assign stage the first service skipped nor anything else: the redo's accept.
    assert await eventually(breaches, timeout_s=20) == [
        (str(order.order_id), "accept", 1),
        (str(owed.order_id), "follow_up", 1),
    ]

    async def overdue_now() -> bool:
        text = (await http.get(metrics_url)).text
        return metric(text, "swd_overdue_open_orders", overdue) == 1

    await eventually(overdue_now, timeout_s=10)

    async def counted() -> bool:
        metrics = (await http.get(f"{stack.urls['audit']}/metrics")).text
        return 'swd_sla_breaches_total{stage="follow_up"' in metrics

    await eventually(counted, timeout_s=10)


async def test_migration_0004_makes_the_county_wide_supervisors_evaluators(
    stack: RunningStack,
) -> None:
    schema = f"audit_upgrade_{uuid.uuid4().hex[:8]}"
    conn = await connect(stack.database_url, schema)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        files = migration_files(service_migrations("audit"))
        loop = [v for v, _ in files].index("service/0004_loop")
        for _, sql in files[:loop]:
            await conn.execute(sql)
        await conn.execute(
            """INSERT INTO readers (id, name, role, station_id, token_hash) VALUES
               ('old-s', 'County', 'supervisor', NULL, 'h1'),
               ('old-m', 'Manager', 'station_manager', 'st-a', 'h2')"""
        )
        for _, sql in files[loop:]:
            await conn.execute(sql)
        roles = {r["id"]: r["role"] for r in await conn.fetch("SELECT id, role FROM readers")}
        assert roles == {"old-s": "evaluator", "old-m": "station_manager"}
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                """INSERT INTO readers (id, name, role, token_hash)
                   VALUES ('s', 'S', 'supervisor', 'h3')"""
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                """INSERT INTO readers (id, name, role, station_id, stations, token_hash)
                   VALUES ('m', 'M', 'station_manager', 'st-a', '{st-b}', 'h4')"""
            )
        await conn.execute(
            """INSERT INTO readers (id, name, role, stations, token_hash) VALUES
               ('s', 'S', 'supervisor', '{st-a,st-b}', 'h5'),
               ('e', 'E', 'evaluator', '{st-a}', 'h6')"""
        )
        await conn.execute(
            """INSERT INTO reviews (order_id, event_id, station_id, reviewer_id, timeliness,
                   professional_quality, record_completeness)
               VALUES (gen_random_uuid(), gen_random_uuid(), 'st-a', 's', 3, 3, 3)"""
        )
        await conn.execute(
            """INSERT INTO supervision_closes (order_id, event_id, station_id, supervisor_id,
                   note)
               VALUES (gen_random_uuid(), gen_random_uuid(), 'st-a', 's', 'n')"""
        )
        for table in ("reviews", "supervision_closes"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(f"DELETE FROM {table}")  # noqa: S608
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def test_a_closed_months_evaluation_is_kept_and_never_changes(
    stack: RunningStack, http: httpx.AsyncClient
) -> None:
    # A month of its own, long closed (in the county's time zone: China Standard Time).
    rng = random.Random()
    year, month = rng.randrange(2000, 2009), rng.randrange(1, 13)
    start, end = month_period(date(year, month, 1), "Asia/Shanghai")
    base = start + timedelta(days=2)
    first = served(base, A, uuid.uuid4(), accept=60, complete=1000)
    first.awaiting_feedback(A, 1001).feedback(A, 1100).closed(A, 1101)
    await publish(stack, [first], seed=26)

    label = f"{year}-{month:02d}"
    made = swdispatch(stack, "audit", "snapshot", "--month", label)
    assert made.returncode == 0, made.stderr
    assert f"{label}: kept" in made.stdout
    url = f"{stack.urls['audit']}/v1/reports/evaluation"
    cst = timedelta(hours=8)
    window = {
        "from": start.astimezone(timezone(cst)).isoformat(),
        "to": end.astimezone(timezone(cst)).isoformat(),
    }
    kept = (await http.get(url, params=window, headers=supervisor(stack))).json()
    assert kept["snapshot"] is True
    (a,) = kept["stations"]
    assert (a["station"], a["completed"], a["accepts_on_time"], a["satisfied"]) == (A, 1, 1, 1)
    assert kept["center"]["visited"] == 1

    # A rebuild from the trail reproduces it exactly.
    entries = (
        await http.get(
            f"{stack.urls['audit']}/v1/orders/{first.order_id}/trail", headers=supervisor(stack)
        )
    ).json()
    again = evaluation(
        Reader("ref", "evaluator"),
        [project(str(first.order_id), [e["event"] for e in entries])],
        datetime.now(UTC),
        DEFAULT_TARGETS,
        kept["review_share"],
        period=(start, end),
    )
    assert plain(again) == approximately(kept["stations"])

    # An order that arrives late for that month changes the projection, not the month.
    late = served(base + timedelta(days=3), A, uuid.uuid4(), accept=5000, complete=6000)
    await publish(stack, [late], seed=27)
    assert (await http.get(url, params=window, headers=supervisor(stack))).json() == kept
    assert "was kept already" in swdispatch(stack, "audit", "snapshot", "--month", label).stdout
    # Any other period is computed afresh, and sees it.
    live = {"from": (start + timedelta(days=1)).isoformat(), "to": end.isoformat()}
    fresh = (await http.get(url, params=live, headers=supervisor(stack))).json()
    assert fresh["snapshot"] is False
    assert fresh["stations"][0]["accepts_late"] == 1
