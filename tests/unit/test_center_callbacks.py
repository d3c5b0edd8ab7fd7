"""Status callback signatures and retry backoff."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from services.dispatch_center.callbacks import backoff, signature
from services.dispatch_center.settings import CenterSettings


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"status":"accepted"}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("secret", "1700000000", body) == f"sha256={expected}"
    assert signature("secret", "1700000001", body) != f"sha256={expected}"
    assert signature("other", "1700000000", body) != f"sha256={expected}"


def test_backoff_doubles_and_is_capped() -> None:
    settings = CenterSettings(callback_backoff_base_s=2, callback_backoff_max_s=30)
    waits = [backoff(settings, attempt) for attempt in range(1, 7)]
    assert waits == [timedelta(seconds=s) for s in (2, 4, 8, 16, 30, 30)]
