"""Credentials: random tokens shown once, stored only as SHA-256 hashes.

The tokens are 256-bit random values, so a fast hash is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
