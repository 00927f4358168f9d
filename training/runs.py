"""A batch run as its chunk jobs see it: which version it writes, whether a newer promotion superseded it, what
happens when its last chunk completes (a re-scoring run switches the project's model_version), and the cluster
ids its predictions get afterwards.

Label Studio's bulk prediction import (and its /predict path) drop a prediction's `cluster`; only the
per-prediction endpoint stores it. So chunks write predictions in bulk, record each task's cluster and score in
Redis, and once the run is complete "cluster" jobs set the clusters one prediction at a time, the most
uncertain first (the order in which Label Studio serves them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis
from rq import get_current_job

from labelstudio.client import LabelStudioClient
from serving.components import label_studio_client
from settings import get_settings
from training.claims import PLAN_TRUST_SECONDS
from training.queue import CLUSTER_FUNCTION, RUN_KEY, enqueue_chunks

RESCORE_SEQUENCE_KEY = "lensguard:rescore-seq:{project}"  # the newest re-scoring run's number, per project
SWITCH_LOCK_KEY = "lensguard:rescore-switch:{project}"
CLUSTERS_KEY = RUN_KEY + ":clusters"  # task id -> [cluster, score, model_version] of the prediction written
COMPLETED_KEY = RUN_KEY + ":completed:{phase}"  # ids of the run's chunk/cluster jobs that completed
CLUSTER_CHUNK_SIZE = 50  # about 15 s of requests: a worker soon takes new pre-annotation again


def newest_rescore(connection: redis.Redis, project: int | str) -> int:
    return int(connection.get(RESCORE_SEQUENCE_KEY.format(project=project)) or 0)


def _client() -> LabelStudioClient:
    return label_studio_client(get_settings(), "predictions cannot be written")


@dataclass
class Run:
    connection: redis.Redis
    run_id: str
    project: int
    version: str
    chunks: int
    rescore: int | None  # a re-scoring run's number; None for a pre-annotation run
    label_config: str | None = None  # the project's, as its planning job read it (a chunk need not ask again)

    @classmethod
    def load(cls, connection: redis.Redis, run_id: str) -> Run:
        raw = {k.decode(): v.decode() for k, v in connection.hgetall(RUN_KEY.format(run=run_id)).items()}
        if not raw:
            raise LookupError(f"run {run_id} is unknown (expired?)")
        rescore = int(raw["rescore"]) if "rescore" in raw else None
        project, version, chunks = int(raw["project"]), raw["version"], int(raw["chunks"])
        return cls(connection, run_id, project, version, chunks, rescore, raw.get("label_config"))

    @property
    def key(self) -> str:
        return RUN_KEY.format(run=self.run_id)

    def superseded(self) -> bool:
        """A newer promotion started a newer re-scoring run for the project: this one stops writing."""
        if self.rescore is None or newest_rescore(self.connection, self.project) <= self.rescore:
            return False
        self.connection.hset(self.key, "superseded", time.time())
        return True

    def plan_trusted(self, job_id: str) -> bool:
        """Whether a chunk may predict the tasks its planning job read instead of re-reading them (see
        training.claims): on its first attempt only (a retried chunk may find its dead attempt's writes), and
        within PLAN_TRUST_SECONDS of when that read began."""
        first = self.connection.set(f"{self.key}:attempted:{job_id}", 1, nx=True, ex=2 * PLAN_TRUST_SECONDS)
        planned_from = self.connection.hget(self.key, "planned_from")
        return bool(first) and planned_from is not None and time.time() - float(planned_from) < PLAN_TRUST_SECONDS

    def record(self, predictions: list[dict]) -> None:
        """Remember each written prediction's cluster and score for the cluster jobs."""
        values = {
            p["task"]: json.dumps([p["cluster"], p["score"], p["model_version"]]) for p in predictions if "cluster" in p
        }
        if values:
            self.connection.hset(CLUSTERS_KEY.format(run=self.run_id), mapping=values)

    def completed(self, phase: str, job_id: str, counters: dict[str, int]) -> bool:
        """Count a job once (a retried job whose first attempt completed adds nothing); True when it was new."""
        if not self.connection.sadd(COMPLETED_KEY.format(run=self.run_id, phase=phase), job_id):
            return False
        with self.connection.pipeline() as pipe:
            for name, value in counters.items():
                pipe.hincrby(self.key, name, value)
            pipe.hset(self.key, "updated", time.time())
            pipe.execute()
        return True

    def chunk_done(self, job_id: str, counters: dict[str, int]) -> None:
        self.completed("chunk", job_id, counters)
        if self.connection.scard(COMPLETED_KEY.format(run=self.run_id, phase="chunk")) >= self.chunks:
            self.finish()

    def finish(self) -> None:
        """All chunks are done: a re-scoring run switches the project's model_version (unless superseded), in
        one step, now that every task it planned has its prediction; then the cluster jobs start. Idempotent."""
        if self.rescore is not None:
            lock = self.connection.lock(SWITCH_LOCK_KEY.format(project=self.project), timeout=120, blocking_timeout=120)
            with lock:
                if self.superseded():
                    return
                _client().update_project(self.project, model_version=self.version)
                self.connection.hsetnx(self.key, "switched", time.time())
        self.start_clustering()

    def start_clustering(self) -> None:
        if self.connection.hsetnx(self.key, "clustering", time.time()) == 0:
            return  # a retried last chunk: the cluster jobs exist already
        raw = self.connection.hgetall(CLUSTERS_KEY.format(run=self.run_id))
        score = {int(task): json.loads(value)[1] for task, value in raw.items()}
        ordered = sorted(score, key=lambda task: (score[task], task))  # most uncertain (lowest score) first
        chunks = [ordered[i : i + CLUSTER_CHUNK_SIZE] for i in range(0, len(ordered), CLUSTER_CHUNK_SIZE)]
        self.connection.hset(self.key, mapping={"to_cluster": len(ordered), "clustered": 0})
        timeout = get_settings().job_timeout_seconds
        enqueue_chunks(self.connection, CLUSTER_FUNCTION, self.project, self.run_id, chunks, "cluster", timeout)


def cluster_job(project_id: int, run_id: str, task_ids: list[int]) -> dict:
    """Set the cluster of the run's predictions of these tasks (one request per prediction, see above)."""
    job = get_current_job()
    run = Run.load(job.connection, run_id)
    if run.superseded():
        return {"status": "superseded"}
    raw = job.connection.hmget(CLUSTERS_KEY.format(run=run_id), task_ids)
    wanted = {task: json.loads(value) for task, value in zip(task_ids, raw, strict=True) if value}
    client = _client()
    patched = 0
    for task in client.iter_tasks(project_id, fields=("id", "predictions"), ids=task_ids):
        cluster, _, version = wanted.get(task["id"], (None, None, None))
        for prediction in task.get("predictions") or []:
            if prediction.get("model_version") == version and prediction.get("cluster") != cluster:
                client.set_prediction_cluster(prediction["id"], cluster)
                patched += 1
    run.completed("cluster", job.id, {"clustered": len(task_ids)})
    return {"status": "done", "patched": patched}
