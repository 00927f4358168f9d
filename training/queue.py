"""The job queue (RQ on Redis) for the job bodies in this package: enqueue with de-duplication, pre-annotation
runs, and job status for the API and CLI."""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

QUEUE_NAME = "lensguard"
TRAIN_FUNCTION = "training.train_job.train_job"
PENDING_KEY = "lensguard:pending:{project}:{kind}"
NEW_ANNOTATIONS_KEY = "lensguard:new-annotations:{project}"
JOBS_INDEX_KEY = "lensguard:jobs"
RUN_KEY = "lensguard:run:{run}"  # a batch pre-annotation run: a hash of counters its chunk jobs update
PREANNOTATE_FUNCTION = "training.preannotate.plan_job"
CHUNK_FUNCTION = "training.preannotate.chunk_job"
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}

# Deletes the pending marker only if it still names this job (a newer job may have replaced it).
_RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class QueueUnavailable(RuntimeError):
    pass


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def release_pending(connection: redis.Redis, project: int | str, kind: str, job_id: str) -> None:
    """Called by a job when it starts: webhooks from now on queue a new job rather than join this one."""
    connection.eval(_RELEASE_SCRIPT, 1, PENDING_KEY.format(project=project, kind=kind), job_id)


class JobQueue:
    def __init__(self, url: str, timeout_seconds: int = 4 * 3600, retries: int = 2):
        self.url = url
        self.connection = connect(url)
        self.queue = Queue(QUEUE_NAME, connection=self.connection)
        self.timeout_seconds = timeout_seconds
        self.retries = retries

    def _guard(self, action):
        try:
            return action()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis at {_safe_url(self.url)}) unavailable: {exc}") from exc

    def count_new_annotations(self, project: int | str, count: int) -> int:
        key = NEW_ANNOTATIONS_KEY.format(project=project)
        return int(self._guard(lambda: self.connection.incrby(key, count)))

    def reset_new_annotations(self, project: int | str) -> None:
        self._guard(lambda: self.connection.delete(NEW_ANNOTATIONS_KEY.format(project=project)))

    def enqueue_training(
        self, project: int | str, kind: str, reason: str, delay_seconds: float = 0.0
    ) -> tuple[str, bool]:
        """(job id, created): at most one waiting job per project and kind; a burst joins the waiting one."""
        args = (int(project), kind, reason)
        return self._guard(lambda: self._enqueue(TRAIN_FUNCTION, args, str(project), kind, reason, delay_seconds))

    def enqueue_preannotation(
        self, project: int | str, mode: str, reason: str, delay_seconds: float = 0.0
    ) -> tuple[str, bool]:
        """A planning job that splits the project's unpredicted tasks into chunk jobs; de-duplicated likewise."""
        args = (int(project), mode, reason)
        return self._guard(
            lambda: self._enqueue(PREANNOTATE_FUNCTION, args, str(project), "preannotate", reason, delay_seconds)
        )

    def _enqueue(
        self, function: str, args: tuple, project: str, kind: str, reason: str, delay_seconds: float
    ) -> tuple[str, bool]:
        key = PENDING_KEY.format(project=project, kind=kind)
        for _ in range(5):
            existing = self.connection.get(key)
            if existing is not None:
                job_id = existing.decode()
                try:
                    if Job.fetch(job_id, connection=self.connection).get_status() in WAITING:
                        return job_id, False
                except NoSuchJobError:
                    pass
                self.connection.delete(key)  # stale marker: the job ran or vanished
            job_id = f"{'train' if function == TRAIN_FUNCTION else kind}-{project}-{kind}-{int(time.time() * 1000)}"
            if not self.connection.set(key, job_id, nx=True, ex=self.timeout_seconds):
                continue  # another webhook won the race; join its job
            self._submit(function, args, job_id, project, kind, reason, delay_seconds)
            return job_id, True
        raise QueueUnavailable("could not enqueue: the pending-job marker kept changing")

    def enqueue(self, function: str, args: tuple, project: int | str, kind: str, reason: str) -> str:
        """A job without de-duplication (prompt evaluations, batch runs)."""
        job_id = f"{kind}-{project}-{int(time.time() * 1000)}"
        self._guard(lambda: self._submit(function, args, job_id, str(project), kind, reason, 0.0))
        return job_id

    def _submit(
        self, function: str, args: tuple, job_id: str, project: str, kind: str, reason: str, delay_seconds: float
    ) -> None:
        options = dict(
            job_id=job_id,
            job_timeout=self.timeout_seconds,
            result_ttl=7 * 24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"{kind} for project {project} ({reason})",
            meta={"project": project, "kind": kind, "reason": reason, "progress": {}, "log": []},
            retry=Retry(max=self.retries, interval=[30, 120, 600][: max(self.retries, 1)]) if self.retries else None,
        )
        if delay_seconds > 0:
            self.queue.enqueue_in(timedelta(seconds=delay_seconds), function, *args, **options)
        else:
            self.queue.enqueue(function, *args, **options)
        self.connection.zadd(JOBS_INDEX_KEY, {job_id: time.time()})

    def job(self, job_id: str) -> dict | None:
        def fetch():
            self._cleanup_abandoned()
            if job_id.startswith("run-"):
                return run_status(self.connection, job_id)
            try:
                return describe(Job.fetch(job_id, connection=self.connection))
            except NoSuchJobError:
                return None

        return self._guard(fetch)

    def jobs(self, limit: int = 50) -> list[dict]:
        def fetch():
            self._cleanup_abandoned()
            ids = [i.decode() for i in self.connection.zrevrange(JOBS_INDEX_KEY, 0, limit - 1)]
            jobs = {job.id: describe(job) for job in Job.fetch_many(ids, connection=self.connection) if job}
            runs = {i: run_status(self.connection, i) for i in ids if i.startswith("run-")}
            return [found for i in ids if (found := jobs.get(i) or runs.get(i)) is not None]

        return self._guard(fetch)

    def _cleanup_abandoned(self) -> None:
        """Jobs whose worker died stop heart-beating; RQ moves them to failed (or retries them) here."""
        self.queue.started_job_registry.cleanup()


def start_run(
    connection: redis.Redis,
    run_id: str,
    project: int,
    version: str,
    chunks: list[list[int]],
    plan_job_id: str,
    timeout_seconds: int,
) -> None:
    """A batch pre-annotation run: its counters (shown as a job) and one chunk job per list of task ids."""
    connection.hset(
        RUN_KEY.format(run=run_id),
        mapping={
            "project": project,
            "version": version,
            "total": sum(len(chunk) for chunk in chunks),
            "done": 0,
            "failed": 0,
            "chunks": len(chunks),
            "started": time.time(),
            "plan_job": plan_job_id,
        },
    )
    connection.zadd(JOBS_INDEX_KEY, {run_id: time.time()})
    queue = Queue(QUEUE_NAME, connection=connection)
    for index, chunk in enumerate(chunks):
        queue.enqueue(
            CHUNK_FUNCTION,
            project,
            run_id,
            chunk,
            job_id=f"{run_id}-chunk-{index}",
            retry=Retry(max=3),
            job_timeout=timeout_seconds,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            meta={"project": str(project), "kind": "preannotate-chunk", "reason": run_id, "progress": {}, "log": []},
        )


def run_status(connection: redis.Redis, run_id: str) -> dict | None:
    """A pre-annotation run, in the shape of a job: done/total, failures, frames/s and ETA."""
    raw = connection.hgetall(RUN_KEY.format(run=run_id))
    if not raw:
        return None
    run = {k.decode(): v.decode() for k, v in raw.items()}
    total, done, failed = int(run["total"]), int(run["done"]), int(run["failed"])
    elapsed = max(float(run.get("updated", run["started"])) - float(run["started"]), 1e-9)
    rate = done / elapsed if done else 0.0
    finished = done >= total
    return {
        "id": run_id,
        "status": "finished" if finished else "started",
        "project": run["project"],
        "kind": "preannotate-run",
        "reason": f"{run['chunks']} chunks",
        "enqueued_at": None,
        "started_at": None,
        "ended_at": None,
        "progress": {
            "stage": f"pre-annotating with {run['version']}",
            "done": done,
            "total": total,
            "failed": failed,
            "rate": round(rate, 2),
            "eta_s": round((total - done) / rate, 1) if rate else None,
        },
        "log": [],
        "result": {"status": "done", "predicted": done - failed, "failed": failed, "version": run["version"]}
        if finished
        else None,
        "error": None,
        "retries_left": None,
    }


def describe(job: Job) -> dict:
    meta = job.get_meta(refresh=False) if hasattr(job, "get_meta") else job.meta
    status = job.get_status(refresh=False)
    result = job.return_value() if status == JobStatus.FINISHED else None
    error = None
    if status == JobStatus.FAILED:
        latest = job.latest_result()
        error = (latest.exc_string or "").strip().splitlines()[-1:] if latest else None
        error = error[0] if error else "failed (the worker stopped or the job was abandoned)"
    return {
        "id": job.id,
        "status": str(status.value if hasattr(status, "value") else status),
        "project": meta.get("project"),
        "kind": meta.get("kind"),
        "reason": meta.get("reason"),
        "enqueued_at": job.enqueued_at.isoformat() if job.enqueued_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "progress": meta.get("progress", {}),
        "log": meta.get("log", []),
        "result": result,
        "error": error,
        "retries_left": job.retries_left,
    }


def _safe_url(url: str) -> str:
    """The Redis URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
