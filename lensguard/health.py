"""Container health checks: the backend answers /health; a worker is registered (heart-beating) in Redis."""

from __future__ import annotations

import socket

import httpx


def backend_health(port: int) -> tuple[bool, str]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    except httpx.HTTPError as exc:
        return False, f"backend on port {port} unreachable: {exc}"
    return response.status_code == 200, response.text


def worker_health(redis_url: str, hostname: str | None = None) -> tuple[bool, str]:
    from redis.exceptions import RedisError
    from rq import Worker

    from training.queue import connect

    hostname = hostname or socket.gethostname()
    try:
        workers = [w.name for w in Worker.all(connection=connect(redis_url)) if w.hostname == hostname]
    except RedisError as exc:
        return False, f"Redis unreachable: {exc}"
    if not workers:
        return False, f"no worker of host {hostname} is registered in Redis"
    return True, f"registered: {', '.join(workers)}"
