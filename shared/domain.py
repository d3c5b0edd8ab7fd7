"""The domain's vocabulary (docs/domain.md): urgencies, categories, groups, roles, statuses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class Category(StrEnum):
    LIFE_ASSISTANCE = "life_assistance"
    PSYCHOLOGICAL_COUNSELLING = "psychological_counselling"
    EMOTIONAL_COMFORT = "emotional_comfort"
    DISABILITY_REHABILITATION = "disability_rehabilitation"
    FAMILY_EDUCATION = "family_education"
    CHILD_PROTECTION = "child_protection"
    CAPACITY_BUILDING = "capacity_building"
    POLICY_AND_BENEFITS = "policy_and_benefits"
    RIGHTS_AND_LEGAL = "rights_and_legal"
    SOCIAL_INTEGRATION = "social_integration"
    CRISIS_INTERVENTION = "crisis_intervention"
    ELDER_CARE = "elder_care"


class BeneficiaryGroup(StrEnum):
    LEFT_BEHIND_CHILDREN = "left_behind_children"
    CHILDREN_IN_DIFFICULTY = "children_in_difficulty"
    WOMEN_IN_HARDSHIP = "women_in_hardship"
    ELDERLY_IN_HARDSHIP = "elderly_in_hardship"
    PEOPLE_WITH_DISABILITIES = "people_with_disabilities"
    LOW_INCOME_HOUSEHOLDS = "low_income_households"
    YOUTH_AT_RISK = "youth_at_risk"
    COMMUNITY_CORRECTIONS = "community_corrections"
    RELEASED_FROM_PRISON = "released_from_prison"
    OTHERS = "others"


class ReporterRole(StrEnum):
    GRID_MEMBER = "grid_member"
    BUILDING_CHIEF = "building_chief"
    VILLAGE_LEADER = "village_leader"
    RESIDENT_GROUP_LEADER = "resident_group_leader"


class OrderStatus(StrEnum):
    SUBMITTED = "submitted"
    UNROUTABLE = "unroutable"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    ASSIGNED = "assigned"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    AWAITING_FEEDBACK = "awaiting_feedback"
    SENT_BACK = "sent_back"
    CLOSED = "closed"
    CLOSED_WITHOUT_FEEDBACK = "closed_without_feedback"
    CANCELLED = "cancelled"


class Satisfaction(StrEnum):
    """The resident's answer at the return visit (回访), best first."""

    VERY_SATISFIED = "very_satisfied"
    SATISFIED = "satisfied"
    NEUTRAL = "neutral"
    DISSATISFIED = "dissatisfied"
    VERY_DISSATISFIED = "very_dissatisfied"

    @property
    def satisfied(self) -> bool:
        """Counts toward the satisfaction rate."""
        return self in (Satisfaction.VERY_SATISFIED, Satisfaction.SATISFIED)

    @property
    def dissatisfied(self) -> bool:
        """Sends the order back for redo (with an unresolved need)."""
        return self in (Satisfaction.DISSATISFIED, Satisfaction.VERY_DISSATISFIED)


class Stage(StrEnum):
    """The four timed stages; each has a deadline measured from submission."""

    DISPATCH = "dispatch"
    ACCEPT = "accept"
    ASSIGN = "assign"
    COMPLETE = "complete"


# The stage an order in each status waits on: its deadline is the one that counts now.
# Statuses not listed (completed, awaiting_feedback, sent_back, closed..., cancelled) wait on
# none of the four stages.
CURRENT_STAGE: dict[OrderStatus, Stage] = {
    OrderStatus.SUBMITTED: Stage.DISPATCH,
    OrderStatus.UNROUTABLE: Stage.DISPATCH,
    OrderStatus.REJECTED: Stage.DISPATCH,
    OrderStatus.ESCALATED: Stage.DISPATCH,
    OrderStatus.DISPATCHED: Stage.ACCEPT,
    OrderStatus.ACCEPTED: Stage.ASSIGN,
    OrderStatus.ASSIGNED: Stage.COMPLETE,
    OrderStatus.IN_SERVICE: Stage.COMPLETE,
}


def current_stage(status: OrderStatus | str) -> Stage | None:
    """The stage an order in ``status`` waits on; None when it waits on none."""
    return CURRENT_STAGE.get(OrderStatus(status))


def current_deadline(
    status: OrderStatus | str, deadlines: Mapping[Stage, datetime]
) -> datetime | None:
    """The deadline of the stage an order in ``status`` waits on; None when it waits on none
    or that deadline is not known."""
    stage = current_stage(status)
    return None if stage is None else deadlines.get(stage)


def current_deadline_sql(
    columns: Mapping[Stage, str], *, status: str = "status", otherwise: str = "NULL"
) -> str:
    """:func:`current_deadline` as a SQL expression: ``columns`` names each stage's deadline
    column (a stage left out counts as ``otherwise``)."""
    whens = "\n".join(
        f"        WHEN '{s.value}' THEN {columns[stage]}"
        for s, stage in CURRENT_STAGE.items()
        if stage in columns
    )
    return f"CASE {status}\n{whens}\n        ELSE {otherwise}\n    END"
