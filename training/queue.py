"""The job queue (RQ on Redis) for the job bodies in this package: enqueue with de-duplication, pre-annotation
runs, and job status for the API and CLI."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from training.job_metrics import CALLBACKS, JobStats, read_job_stats

PREANNOTATE_QUEUE = "preannotate"  # planning, chunks, re-scoring: uploads never wait behind training
TRAIN_QUEUE = "train"  # training, prompt evaluation
CLUSTERS_QUEUE = "clusters"  # storing cluster ids one prediction at a time, after a run (see training.runs)
VLM_QUEUE = "vlm"  # generative-VLM jobs for frames in the uncertain band: after everything else
QUEUE_NAMES = (PREANNOTATE_QUEUE, TRAIN_QUEUE, CLUSTERS_QUEUE, VLM_QUEUE)  # a worker's default: all, in this order
TRAIN_FUNCTION = "training.train_job.train_job"
PENDING_KEY = "lensguard:pending:{project}:{kind}"
NEW_ANNOTATIONS_KEY = "lensguard:new-annotations:{project}"
JOBS_INDEX_KEY = "lensguard:jobs"
RUN_KEY = "lensguard:run:{run}"  # a batch pre-annotation run: a hash of counters its chunk jobs update
PREANNOTATE_FUNCTION = "training.preannotate.plan_job"
CHUNK_FUNCTION = "training.preannotate.chunk_job"
RESCORE_FUNCTION = "training.rescore.plan_rescore"
CLUSTER_FUNCTION = "training.runs.cluster_job"
PREANNOTATE_FUNCTIONS = {PREANNOTATE_FUNCTION, CHUNK_FUNCTION, RESCORE_FUNCTION}
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# VLM jobs have their own queue, which workers take only when the main one is empty: they never hold up CLIP.
VLM_FUNCTION = "training.vlm_job.vlm_job"
VLM_ANSWERS_KEY = "lensguard:vlm-answers:{project}"  # task id -> the VLM's verdict, for pseudo-labels

# Deletes the pending marker only if it still names this job (a newer job may have replaced it).
_RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


_COUNT_SCRIPT = """
local n = redis.call('incrby', KEYS[1], ARGV[1])
if n >= tonumber(ARGV[2]) then
  redis.call('del', KEYS[1])
  return {n, 1}
end
return {n, 0}
"""


MARKER_GRACE_SECONDS = 30  # a marker whose job is not stored yet is being enqueued, not stale


class QueueUnavailable(RuntimeError):
    pass


def _created_at(job_id: str) -> float:
    """Job ids end with their creation time in milliseconds."""
    try:
        return int(job_id.rsplit("-", 1)[-1]) / 1000
    except ValueError:
        return 0.0


def _plain(value: object) -> object:
    """numpy scalars and arrays, paths, dates and sets as JSON values."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{value.__class__.__name__} is not JSON serialisable in a job payload")


class JobSerializer:
    """RQ serializer for job arguments, metadata and results: JSON, never pickle, so whoever can write to Redis
    can change a job's ids and strings but cannot make a worker or the backend run code."""

    @staticmethod
    def dumps(obj: object) -> bytes:
        return json.dumps(obj, default=_plain, separators=(",", ":")).encode()

    @staticmethod
    def loads(data: bytes) -> object:
        return json.loads(data.decode() if isinstance(data, bytes | bytearray) else data)


def job_queue(connection: redis.Redis, name: str) -> Queue:
    """An RQ queue whose jobs are JSON (use it, or pass serializer=JobSerializer, wherever RQ is used)."""
    return Queue(name, connection=connection, serializer=JobSerializer)


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def release_pending(connection: redis.Redis, project: int | str, kind: str, job_id: str) -> None:
    """Called by a job when it starts: webhooks from now on queue a new job rather than join this one."""
    connection.eval(_RELEASE_SCRIPT, 1, PENDING_KEY.format(project=project, kind=kind), job_id)


class JobQueue:
    def __init__(self, url: str, timeout_seconds: int = 4 * 3600, retries: int = 2):
        self.url = url
        self.connection = connect(url)
        self.queues = {name: job_queue(self.connection, name) for name in QUEUE_NAMES}
        self.queue = self.queues[TRAIN_QUEUE]
        self.timeout_seconds = timeout_seconds
        self.retries = retries

    def _guard(self, action):
        try:
            return action()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis at {_safe_url(self.url)}) unavailable: {exc}") from exc

    def add_annotations(self, project: int | str, count: int, threshold: int) -> tuple[int, bool]:
        """Counts new annotations; (count, due): due once `threshold` is reached, when the count restarts from 0.
        One Redis script, so concurrent webhooks never both see the threshold or lose each other's counts."""
        key = NEW_ANNOTATIONS_KEY.format(project=project)
        count_now, due = self._guard(lambda: self.connection.eval(_COUNT_SCRIPT, 1, key, count, threshold))
        return int(count_now), bool(due)

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
                    if Job.fetch(job_id, connection=self.connection, serializer=JobSerializer).get_status() in WAITING:
                        return job_id, False
                except NoSuchJobError:
                    if time.time() - _created_at(job_id) < MARKER_GRACE_SECONDS:
                        return job_id, False  # its creator set the marker and is submitting the job right now
                # stale (the job ran or vanished): remove the marker, unless another webhook replaced it meanwhile
                self.connection.eval(_RELEASE_SCRIPT, 1, key, job_id)
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
            **CALLBACKS,
        )
        queue = self.queues[PREANNOTATE_QUEUE if function in PREANNOTATE_FUNCTIONS else TRAIN_QUEUE]
        if delay_seconds > 0:
            queue.enqueue_in(timedelta(seconds=delay_seconds), function, *args, **options)
        else:
            queue.enqueue(function, *args, **options)
        self.connection.zadd(JOBS_INDEX_KEY, {job_id: time.time()})

    def job(self, job_id: str) -> dict | None:
        def fetch():
            self._cleanup_abandoned()
            if job_id.startswith("run-"):
                return run_status(self.connection, job_id)
            try:
                return describe(Job.fetch(job_id, connection=self.connection, serializer=JobSerializer))
            except (NoSuchJobError, ValueError):  # ValueError: not a job id RQ accepts
                return None

        return self._guard(fetch)

    def jobs(self, limit: int = 50) -> list[dict]:
        def fetch():
            self._cleanup_abandoned()
            ids = [i.decode() for i in self.connection.zrevrange(JOBS_INDEX_KEY, 0, limit - 1)]
            jobs = {
                job.id: describe(job)
                for job in Job.fetch_many(ids, connection=self.connection, serializer=JobSerializer)
                if job
            }
            runs = {i: run_status(self.connection, i) for i in ids if i.startswith("run-")}
            return [found for i in ids if (found := jobs.get(i) or runs.get(i)) is not None]

        return self._guard(fetch)

    def depth(self) -> dict[str, int]:
        """How many jobs wait (queued, scheduled for later, deferred), run, or failed, over every queue."""

        def count() -> dict[str, int]:
            totals = {"queued": 0, "scheduled": 0, "deferred": 0, "started": 0, "failed": 0}
            for queue in self.queues.values():
                totals["queued"] += queue.count
                totals["scheduled"] += queue.scheduled_job_registry.count
                totals["deferred"] += queue.deferred_job_registry.count
                totals["started"] += queue.started_job_registry.count
                totals["failed"] += queue.failed_job_registry.count
            return totals

        return self._guard(count)

    def job_stats(self) -> dict[tuple[str, str], JobStats]:
        return self._guard(lambda: read_job_stats(self.connection))

    def _cleanup_abandoned(self) -> None:
        """Jobs whose worker died stop heart-beating; RQ moves them to failed (or retries them) here."""
        # (the failure callbacks run here, in whichever thread asks: a timer, not SIGALRM, bounds them)
        for queue in self.queues.values():
            StartedJobRegistry(queue=queue, death_penalty_class=TimerDeathPenalty).cleanup()


def start_run(
    connection: redis.Redis,
    run_id: str,
    project: int,
    version: str,
    chunks: list[list[int | dict]],
    plan_job_id: str,
    timeout_seconds: int,
    **fields: str | int | float,
) -> None:
    """A batch run (pre-annotation, re-scoring with `rescore`=its sequence number): its counters (shown as a
    job) and one chunk job per list of task ids."""
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
            **fields,
        },
    )
    connection.zadd(JOBS_INDEX_KEY, {run_id: time.time()})
    enqueue_chunks(connection, CHUNK_FUNCTION, project, run_id, chunks, "chunk", timeout_seconds)


def enqueue_chunks(
    connection: redis.Redis,
    function: str,
    project: int,
    run_id: str,
    chunks: list[list[int | dict]],
    name: str,
    timeout_seconds: int,
) -> None:
    queue = job_queue(connection, CLUSTERS_QUEUE if function == CLUSTER_FUNCTION else PREANNOTATE_QUEUE)
    for index, chunk in enumerate(chunks):
        queue.enqueue(
            function,
            int(project),
            run_id,
            [task if isinstance(task, dict) else int(task) for task in chunk],
            job_id=f"{run_id}-{name}-{index}",
            retry=Retry(max=3),
            job_timeout=timeout_seconds,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            meta={"project": str(project), "kind": f"run-{name}", "reason": run_id, "progress": {}, "log": []},
            **CALLBACKS,
        )


def enqueue_vlm(connection: redis.Redis, project: int, job_id: str, task_ids: list[int], timeout_seconds: int) -> str:
    """A VLM job for a chunk's band frames: it adds a prediction with the combined version to each."""
    job_queue(connection, VLM_QUEUE).enqueue(
        VLM_FUNCTION,
        int(project),
        [int(task) for task in task_ids],
        job_id=job_id,
        retry=Retry(max=2),
        job_timeout=timeout_seconds,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        meta={"project": str(project), "kind": "vlm", "reason": f"{len(task_ids)} band frames", "progress": {}},
        **CALLBACKS,
    )
    connection.zadd(JOBS_INDEX_KEY, {job_id: time.time()})
    return job_id


def run_status(connection: redis.Redis, run_id: str) -> dict | None:
    """A pre-annotation run, in the shape of a job: done/total, failures, frames/s and ETA."""
    raw = connection.hgetall(RUN_KEY.format(run=run_id))
    if not raw:
        return None
    run = {k.decode(): v.decode() for k, v in raw.items()}
    total, done, failed = int(run["total"]), int(run["done"]), int(run["failed"])
    elapsed = max(float(run.get("updated", run["started"])) - float(run["started"]), 1e-9)
    rate = done / elapsed if done else 0.0
    rescore = "rescore" in run
    counters = ("switched", "superseded", "to_cluster", "clustered", "encoded", "read_ms", "write_ms", "total_ms")
    ended = {key: run[key] for key in counters if key in run}
    finished = "superseded" in run or (done >= total and (not rescore or "switched" in run))
    return {
        "id": run_id,
        "status": "finished" if finished else "started",
        "project": run["project"],
        "kind": "rescore-run" if rescore else "preannotate-run",
        "reason": f"{run['chunks']} chunks",
        "enqueued_at": None,
        "started_at": None,
        "ended_at": None,
        "progress": {
            "stage": f"{'re-scoring' if rescore else 'pre-annotating'} with {run['version']}",
            "done": done,
            "total": total,
            "failed": failed,
            "rate": round(rate, 2),
            "eta_s": round((total - done) / rate, 1) if rate else None,
        },
        "log": [],
        "result": {
            "status": "superseded" if "superseded" in run else "done",
            "predicted": done - failed,
            "failed": failed,
            "version": run["version"],
            **ended,
        }
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
