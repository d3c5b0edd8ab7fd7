"""Intake request bodies, as an integration sends them."""

from __future__ import annotations

import random
from typing import Any

from swdispatch.demo import random_request
from tests.helpers import remember_personal_data_of


def request_body(seed: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A plausible request (the demo's generator, seeded); its personal data is remembered, so
    that no log may show it."""
    body = random_request(random.Random(seed))
    body.update(overrides)
    remember_personal_data_of(body)
    return body
