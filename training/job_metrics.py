"""Job outcomes and durations per kind, recorded in Redis by the worker that ran the job (RQ callbacks), so the
backend's /metrics reports them whichever machine ran it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq import Callback
from rq.exceptions import AbandonedJobError
from rq.job import Job

JOB_METRICS_KEY = "lensguard:metrics:jobs"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


@dataclass
class JobStats:
    count: int = 0
    seconds: float = 0.0
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound -> jobs at or under it


def record_job(connection: redis.Redis, kind: str, outcome: str, seconds: float) -> None:
    prefix = f"{kind}|{outcome}|"
    with connection.pipeline() as pipeline:
        pipeline.hincrby(JOB_METRICS_KEY, prefix + "count", 1)
        pipeline.hincrbyfloat(JOB_METRICS_KEY, prefix + "sum", seconds)
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                pipeline.hincrby(JOB_METRICS_KEY, f"{prefix}le|{bound:g}", 1)
        pipeline.execute()


def read_job_stats(connection: redis.Redis) -> dict[tuple[str, str], JobStats]:
    """(kind, outcome) -> count, total seconds and cumulative bucket counts."""
    stats: dict[tuple[str, str], JobStats] = {}
    for raw_key, raw_value in connection.hgetall(JOB_METRICS_KEY).items():
        kind, outcome, what, *bound = raw_key.decode().split("|")
        entry = stats.setdefault((kind, outcome), JobStats())
        if what == "count":
            entry.count = int(raw_value)
        elif what == "sum":
            entry.seconds = float(raw_value)
        elif what == "le" and bound:
            entry.buckets[float(bound[0])] = int(raw_value)
    return stats


def _elapsed(job: Job) -> float:
    started = job.started_at
    if started is None:
        return 0.0
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max((datetime.now(UTC) - started).total_seconds(), 0.0)


def _kind(job: Job) -> str:
    return str((job.meta or {}).get("kind") or "unknown")


def job_succeeded(job: Job, connection: redis.Redis, result, *args, **kwargs) -> None:
    """The outcome of a finished job is its result's status (promoted, need_both_classes, ...) when it has one."""
    outcome = result.get("status") if isinstance(result, dict) and result.get("status") else "finished"
    record_job(connection, _kind(job), str(outcome), _elapsed(job))


def job_failed(job: Job, connection: redis.Redis, exc_type=None, *exc_info) -> None:
    """A job that raised, or whose worker died (noticed later by whoever cleans the registry: `abandoned`)."""
    outcome = "abandoned" if exc_type is AbandonedJobError else "failed"
    record_job(connection, _kind(job), outcome, _elapsed(job))


CALLBACKS = {
    "on_success": Callback("training.job_metrics.job_succeeded"),
    "on_failure": Callback("training.job_metrics.job_failed"),
}
