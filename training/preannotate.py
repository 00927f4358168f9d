"""Batch pre-annotation: a planning job splits a project's unpredicted tasks into chunks; chunk jobs (any number
of workers, any machines sharing Redis and the model directory) predict and write back in bulk.

Resumable and idempotent: a task is skipped when Label Studio already holds a prediction of the version being
served, checked again by each chunk right before it writes, so a retried or duplicated chunk adds nothing.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from rq import get_current_job

from labelstudio.client import LabelStudioClient
from serving.components import build_serving, label_studio_client
from serving.service import PredictionService
from settings import Settings, get_settings
from training.progress import JobProgress
from training.queue import RUN_KEY, release_pending, start_run

log = logging.getLogger(__name__)
MODES = ("missing", "all")  # tasks without any prediction / tasks without one of the served version


@lru_cache(maxsize=1)
def worker_service() -> PredictionService:
    """The serving stack, loaded once per worker process and reused by every chunk it runs."""
    serving = build_serving(get_settings())
    if serving.service is None:
        raise RuntimeError(f"model not loaded: {serving.error}")
    return serving.service


def _client(settings: Settings) -> LabelStudioClient:
    return label_studio_client(settings, "tasks cannot be read or written")


def tasks_to_predict(tasks: list[dict], version: str, mode: str) -> list[dict]:
    """Tasks (as listed with their predictions) that still need one: none at all, or none of `version`."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")

    def done(task: dict) -> bool:
        versions = [p.get("model_version") for p in task.get("predictions") or []]
        return bool(versions) if mode == "missing" else version in versions

    return [task for task in tasks if not done(task)]


def plan_job(project_id: int, mode: str = "missing", reason: str = "manual") -> dict:
    job = get_current_job()
    if job is not None:
        release_pending(job.connection, project_id, "preannotate", job.id)
    settings = get_settings()
    progress = JobProgress()
    client = _client(settings)
    version = worker_service().model_version(str(project_id))
    tasks = client.tasks(project_id)
    todo = [t["id"] for t in tasks_to_predict(tasks, version, mode)]
    progress.log(f"{len(todo)} of {len(tasks)} tasks to pre-annotate with {version} ({mode}, {reason})")
    run_id = f"run-{project_id}-{int(time.time() * 1000)}"
    size = settings.preannotate_chunk_size
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    if job is not None:
        start_run(job.connection, run_id, project_id, version, chunks, job.id, settings.job_timeout_seconds)
    return {"status": "planned", "run": run_id, "total": len(todo), "chunks": len(chunks), "version": version}


def chunk_job(project_id: int, run_id: str, task_ids: list[int]) -> dict:
    job = get_current_job()
    written, failed = predict_and_write(project_id, task_ids, get_settings())
    if job is not None:  # counted once, when the chunk completes; a crashed attempt counts nothing
        key = RUN_KEY.format(run=run_id)
        job.connection.hincrby(key, "done", len(task_ids))
        job.connection.hincrby(key, "failed", failed)
        job.connection.hset(key, "updated", time.time())
    return {"written": written, "failed": failed, "already_done": len(task_ids) - written - failed}


def predict_and_write(project_id: int, task_ids: list[int], settings: Settings) -> tuple[int, int]:
    """Predict tasks that still lack the served version; fetching and decoding batch k+1 overlaps batch k."""
    service = worker_service()
    client = _client(settings)
    project = str(project_id)
    version = service.model_version(project)
    label_config = client.project(project_id)["label_config"]
    tasks = client.tasks(project_id, ids=task_ids)
    todo = tasks_to_predict(tasks, version, "all")
    batch = service.pipeline.scorer.batch_size
    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    written = failed = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as prefetch:
        upcoming = prefetch.submit(service.prepare, batches[0], label_config, project) if batches else None
        for index in range(len(batches)):
            prepared = upcoming.result()
            if index + 1 < len(batches):
                upcoming = prefetch.submit(service.prepare, batches[index + 1], label_config, project)
            results = service.finish(prepared)
            good = [
                {"task": r["task"], "result": r["result"], "score": r["score"], "model_version": r["model_version"]}
                for r in results
                if "result" in r
            ]
            client.import_predictions(project_id, good)
            written += len(good)
            failed += len(results) - len(good)
    return written, failed + (len(task_ids) - len(tasks))  # tasks deleted meanwhile count as failed
