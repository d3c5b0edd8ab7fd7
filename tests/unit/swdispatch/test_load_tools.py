"""The simulator's request mix and the benchmark's arithmetic."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.dispatch_center.api.schemas import IntakeRequest
from swdispatch.bench import comparison, format_table
from swdispatch.ceilings import percentile
from swdispatch.county import County, request


def test_requests_are_valid_intake_bodies_with_a_realistic_mix() -> None:
    county = County(townships=3, communities_per_township=4, workers_per_station=2)
    rng = random.Random(1)
    bodies = [request(rng, county) for _ in range(2000)]
    for body in bodies[:200]:
        IntakeRequest.model_validate(body)
    urgencies = Counter(b["urgency"] for b in bodies)
    assert urgencies["routine"] > urgencies["urgent"] > urgencies["emergency"] > 0
    assert all(
        b["urgency"] == "emergency" for b in bodies if b["category"] == "crisis_intervention"
    )
    communities = {b["location"]["community_code"] for b in bodies}
    assert len(communities) == 12
    assert len({b["beneficiary"]["group"] for b in bodies}) == 10


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([5.0], 0.99) == 5.0
    assert percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)


def test_comparison_puts_each_figure_beside_its_ceiling() -> None:
    ceilings = {
        "http_trivial_requests_per_s": 1000.0,
        "postgres_insert_tx_per_s": 2000.0,
        "kafka_produce_consume_per_s": 10000.0,
        "kafka_round_trip_p50_ms": 2.0,
        "kafka_round_trip_p99_ms": 8.0,
    }
    step = {
        "rate_per_s": 200,
        "intake_to_station": {"p50_ms": 20.0, "p99_ms": 80.0},
        "intake_to_audit": {"p50_ms": 30.0, "p99_ms": 96.0},
    }
    pipeline = {
        "steps": [step],
        "sustained_step": step,
        "sustained_intake_per_s": 200.0,
        "lifecycle": {"available": True, "completed_per_s": 50.0},
    }
    rows = {(r["figure"], r["ceiling"]): r["ratio"] for r in comparison(ceilings, pipeline)}
    assert rows["sustained intake (orders/s)", "http_trivial_requests_per_s"] == 0.2
    assert rows["sustained intake (orders/s)", "postgres_insert_tx_per_s"] == 0.1
    assert rows["intake->station p99 ms at 200/s", "kafka_round_trip_p99_ms"] == 10.0
    assert rows["intake->audit p50 ms at max sustained", "kafka_round_trip_p50_ms"] == 15.0
    assert rows["full lifecycle (orders/s)", "http_trivial_requests_per_s"] == 0.05
    assert "intake->station p99 ms at 200/s" in format_table(comparison(ceilings, pipeline))
