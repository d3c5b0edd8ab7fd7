"""The errors a use case raises. They know nothing of HTTP: ``shared.http`` maps each to one
status and one RFC 9457 problem body, the same in every service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class DomainError(Exception):
    """``detail`` is a sentence for a person; ``extra`` are members added to the problem body
    (for a conflict, e.g. the order's current ``state`` and ``version``)."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: Mapping[str, Any] = extra


class NotFound(DomainError):
    """404: the thing asked for does not exist, or is not the caller's to see."""


class Conflict(DomainError):
    """409: the request is well formed but the thing's current state does not allow it."""


class Forbidden(DomainError):
    """403: the caller is known but may not do this."""


class Unauthorized(DomainError):
    """401: no or unknown credentials; ``scheme`` goes into WWW-Authenticate."""

    def __init__(self, detail: str, *, scheme: str = "Bearer") -> None:
        super().__init__(detail)
        self.scheme = scheme


class TooManyRequests(DomainError):
    """429: over a rate limit; ``retry_after`` (seconds) goes into Retry-After."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidField(DomainError):
    """422 at one field: ``loc`` is its path as FastAPI writes it, e.g. ``("body", "reason")``;
    ``type`` is a short machine-readable reason."""

    def __init__(self, loc: Sequence[str | int], detail: str, *, type: str = "value_error") -> None:
        super().__init__(detail)
        self.loc = tuple(loc)
        self.type = type
