"""A synthetic county for the simulator and the benchmark: townships with their communities,
one social-work station per township, its manager and social workers; and requests with a
realistic mix of categories, beneficiary groups and urgencies (docs/domain.md)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from services.audit.admin import create_reader
from services.dispatch_center.admin import create_integration, upsert_community, upsert_station
from services.station_worker.admin import create_staff
from shared.db import transaction_in
from shared.domain import BeneficiaryGroup, Category, Urgency
from swdispatch.demo import intake_body

# Who is served, and what they need, roughly as a county's caseload looks: elderly people and
# children make up most of it; a few needs are tied to the group.
GROUP_WEIGHTS: dict[BeneficiaryGroup, int] = {
    BeneficiaryGroup.ELDERLY_IN_HARDSHIP: 30,
    BeneficiaryGroup.LEFT_BEHIND_CHILDREN: 14,
    BeneficiaryGroup.CHILDREN_IN_DIFFICULTY: 8,
    BeneficiaryGroup.PEOPLE_WITH_DISABILITIES: 12,
    BeneficiaryGroup.LOW_INCOME_HOUSEHOLDS: 14,
    BeneficiaryGroup.WOMEN_IN_HARDSHIP: 6,
    BeneficiaryGroup.YOUTH_AT_RISK: 5,
    BeneficiaryGroup.COMMUNITY_CORRECTIONS: 3,
    BeneficiaryGroup.RELEASED_FROM_PRISON: 2,
    BeneficiaryGroup.OTHERS: 6,
}
GROUP_CATEGORIES: dict[BeneficiaryGroup, tuple[Category, ...]] = {
    BeneficiaryGroup.ELDERLY_IN_HARDSHIP: (
        Category.ELDER_CARE,
        Category.LIFE_ASSISTANCE,
        Category.EMOTIONAL_COMFORT,
    ),
    BeneficiaryGroup.LEFT_BEHIND_CHILDREN: (
        Category.CHILD_PROTECTION,
        Category.FAMILY_EDUCATION,
        Category.EMOTIONAL_COMFORT,
    ),
    BeneficiaryGroup.CHILDREN_IN_DIFFICULTY: (
        Category.CHILD_PROTECTION,
        Category.POLICY_AND_BENEFITS,
    ),
    BeneficiaryGroup.PEOPLE_WITH_DISABILITIES: (
        Category.DISABILITY_REHABILITATION,
        Category.POLICY_AND_BENEFITS,
        Category.LIFE_ASSISTANCE,
    ),
    BeneficiaryGroup.LOW_INCOME_HOUSEHOLDS: (
        Category.POLICY_AND_BENEFITS,
        Category.CAPACITY_BUILDING,
        Category.LIFE_ASSISTANCE,
    ),
    BeneficiaryGroup.WOMEN_IN_HARDSHIP: (
        Category.RIGHTS_AND_LEGAL,
        Category.PSYCHOLOGICAL_COUNSELLING,
        Category.CAPACITY_BUILDING,
    ),
    BeneficiaryGroup.YOUTH_AT_RISK: (
        Category.PSYCHOLOGICAL_COUNSELLING,
        Category.SOCIAL_INTEGRATION,
    ),
    BeneficiaryGroup.COMMUNITY_CORRECTIONS: (
        Category.SOCIAL_INTEGRATION,
        Category.RIGHTS_AND_LEGAL,
    ),
    BeneficiaryGroup.RELEASED_FROM_PRISON: (
        Category.SOCIAL_INTEGRATION,
        Category.CAPACITY_BUILDING,
    ),
    BeneficiaryGroup.OTHERS: tuple(Category),
}
URGENCY_WEIGHTS: dict[Urgency, int] = {
    Urgency.EMERGENCY: 2,
    Urgency.URGENT: 18,
    Urgency.ROUTINE: 80,
}
CRISIS_SHARE = 0.03
"""Share of requests that are crisis interventions whatever the group."""


@dataclass(frozen=True)
class County:
    """A simulated county: one station per township, its communities, its social workers; ids
    and codes derived from the numbers."""

    townships: int
    communities_per_township: int
    workers_per_station: int

    def station_id(self, township: int) -> str:
        return f"sim-st-{township:03d}"

    def township_code(self, township: int) -> str:
        return f"SIM-T{township:03d}"

    def community_code(self, township: int, community: int) -> str:
        return f"SIM-T{township:03d}-C{community:03d}"

    @property
    def station_ids(self) -> list[str]:
        return [self.station_id(t) for t in range(self.townships)]

    def worker_ids(self, station_id: str) -> list[str]:
        return [f"{station_id}-sw{i}" for i in range(1, self.workers_per_station + 1)]


async def seed(
    database_url: str, county: County, *, integration: str, callback_secret_key: str
) -> dict[str, Any]:
    """Write the county into each service's schema; return its credentials, shaped like the
    demo's (``swdispatch.demo.seed``). Each community falls back to the next township's
    station, so a rejected order is redispatched rather than held."""
    async with transaction_in("dispatch_center", database_url) as conn:
        for t in range(county.townships):
            await upsert_station(
                conn, county.station_id(t), f"Simulated station {t}", county.township_code(t)
            )
        for t in range(county.townships):
            fallback = county.station_id((t + 1) % county.townships)
            for c in range(county.communities_per_township):
                await upsert_community(
                    conn,
                    county.community_code(t, c),
                    f"Simulated community {t}.{c}",
                    county.township_code(t),
                    county.station_id(t),
                    [fallback] if county.townships > 1 else [],
                )
        # The simulator is one integration sending a county's traffic: no per-minute limit.
        created = await create_integration(
            conn,
            integration,
            callback_secret_key=callback_secret_key,
            rate_limit_per_minute=10_000_000,
            reissue=True,
        )
    stations: dict[str, Any] = {}
    async with transaction_in("station_worker", database_url) as conn:
        for station_id in county.station_ids:
            manager = await create_staff(
                conn,
                station_id,
                "station_manager",
                "Simulated manager",
                f"{station_id}-mgr",
                reissue=True,
            )
            workers = {
                worker_id: await create_staff(
                    conn, station_id, "social_worker", "Simulated worker", worker_id, reissue=True
                )
                for worker_id in county.worker_ids(station_id)
            }
            stations[station_id] = {"manager_token": manager, "social_worker_tokens": workers}
    async with transaction_in("audit", database_url) as conn:
        supervisor = await create_reader(
            conn, "sim-supervisor", "Simulation evaluator", "evaluator", reissue=True
        )
    return {
        "integration": {
            "id": created.id,
            "api_key": created.key,
            "callback_secret": created.callback_secret,
        },
        "stations": stations,
        "audit_supervisor_token": supervisor,
    }


def request(rng: random.Random, county: County) -> dict[str, Any]:
    """One intake body: a random community of the county, a plausible group, need and urgency."""
    t = rng.randrange(county.townships)
    c = rng.randrange(county.communities_per_township)
    group = rng.choices(list(GROUP_WEIGHTS), weights=list(GROUP_WEIGHTS.values()))[0]
    if rng.random() < CRISIS_SHARE:
        category = Category.CRISIS_INTERVENTION
    else:
        category = rng.choice(GROUP_CATEGORIES[group])
    urgency = rng.choices(list(URGENCY_WEIGHTS), weights=list(URGENCY_WEIGHTS.values()))[0]
    if category is Category.CRISIS_INTERVENTION:
        urgency = Urgency.EMERGENCY
    return intake_body(
        rng,
        id_prefix="sim",
        township_code=county.township_code(t),
        community_code=county.community_code(t, c),
        group=group,
        category=category,
        urgency=urgency,
    )
