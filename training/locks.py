"""Project-wide locks on Redis, for steps that two workers must never interleave (evaluation-set updates,
compare-and-promote)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from training.queue import QueueUnavailable, connect

LOCK_KEY = "lensguard:lock:{name}"
# Deletes the lock only if it is still ours (it may have expired and been taken by another worker).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@contextmanager
def project_lock(redis_url: str, name: str, hold_seconds: float = 900, wait_seconds: float = 900) -> Iterator[None]:
    connection = connect(redis_url)
    key, token = LOCK_KEY.format(name=name), uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    try:
        while not connection.set(key, token, nx=True, px=int(hold_seconds * 1000)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"lock {name} still held by another worker after {wait_seconds:.0f}s")
            time.sleep(0.1)
    except redis.RedisError as exc:
        raise QueueUnavailable(f"Redis unavailable for lock {name}: {exc.__class__.__name__}") from exc
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            connection.eval(_RELEASE, 1, key, token)
