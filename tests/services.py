"""Addresses of the real services the tests use; overridable so that several checkouts can test at once."""

from __future__ import annotations

import os

REDIS_BASE_URL = os.environ.get("LENSGUARD_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def redis_url(db: int) -> str:
    """A Redis database of its own per test module (each module flushes its database first)."""
    return f"{REDIS_BASE_URL}/{db}"
