"""Batch pre-annotation: a planning job splits a project's unpredicted tasks into chunks; chunk jobs (any number
of workers, any machines sharing Redis and the model directory) predict and write back in bulk.

Resumable and idempotent: a task is skipped when Label Studio already holds a prediction of the version being
served, checked again by each chunk right before it writes (unless its planning read is recent enough to trust,
see training.claims), and a chunk writes only the tasks it claimed, so a retried or duplicated chunk, or a run
beside it, adds nothing twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial

from rq import get_current_job
from rq.job import Job

from labelstudio.client import LabelStudioClient
from labelstudio.server_flags import slow_import_warning
from serving.components import build_serving, label_studio_client
from serving.service import PredictionService
from serving.vlm import VlmMode
from settings import Settings, get_settings
from training.claims import claim, hold_written
from training.progress import JobProgress
from training.queue import enqueue_vlm, release_pending, start_run
from training.runs import Run
from training.task_reads import lacking_version, unpredicted_ids

log = logging.getLogger(__name__)
WRITE_BATCH = 256  # predictions per bulk import into Label Studio
MAX_CARRIED_BYTES = 4096  # a planned task larger than this travels to its chunk as its id only


@lru_cache(maxsize=1)
def worker_service() -> PredictionService:
    """The serving stack, loaded once per worker process and reused by every chunk it runs."""
    serving = build_serving(get_settings())
    if serving.service is None:
        raise RuntimeError(f"model not loaded: {serving.error}")
    return serving.service


def _client(settings: Settings) -> LabelStudioClient:
    return label_studio_client(settings, "tasks cannot be read or written")


def plan_job(project_id: int, mode: str = "missing", reason: str = "manual") -> dict:
    job = get_current_job()
    if job is not None:
        release_pending(job.connection, project_id, "preannotate", job.id)
    settings = get_settings()
    version = worker_service().model_version(str(project_id))
    client = _client(settings)
    todo = list(unpredicted_ids(client, project_id, version, mode))
    project = client.project(project_id)
    JobProgress().log(
        f"{len(todo)} of {project.get('task_number')} tasks to pre-annotate with {version} ({mode}, {reason})"
    )
    run_id = f"run-{project_id}-{int(time.time() * 1000)}"
    planned = start_chunks(job, run_id, project_id, version, todo, settings, label_config=project["label_config"])
    return planned | server_warnings(client)


def server_warnings(client: LabelStudioClient) -> dict:
    """{"warnings": [...]} for what slows the run down on Label Studio's side (logged too), else {}."""
    warning = slow_import_warning(client.feature_flags())
    if warning is None:
        return {}
    log.warning(warning)
    return {"warnings": [warning]}


def start_chunks(
    job: Job | None,
    run_id: str,
    project_id: int,
    version: str,
    todo: Sequence[int | dict],
    settings: Settings,
    size: int = 0,
    **fields,
) -> dict:
    """Split `todo` into chunk jobs of `size` (default: the pre-annotation chunk size) of a new run (a run with
    nothing to do finishes at once). `todo`: task ids, or tasks as the planning read them (see `carried`), with
    `planned_from` in `fields` (when that read began)."""
    size = size or settings.preannotate_chunk_size
    todo = [carried(task) for task in todo]
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    if job is not None:
        connection = job.connection
        start_run(connection, run_id, project_id, version, chunks, job.id, settings.job_timeout_seconds, **fields)
        if not chunks:
            Run.load(connection, run_id).finish()
    return {"status": "planned", "run": run_id, "total": len(todo), "chunks": len(chunks), "version": version}


def carried(task: int | dict) -> int | dict:
    """What a chunk job's arguments hold of a task: what predicting it needs, or only its id where the task is
    large (the chunk reads it from Label Studio)."""
    if isinstance(task, int):
        return task
    kept = {key: task[key] for key in ("id", "data", "meta") if task.get(key) is not None}
    return kept if len(json.dumps(kept)) <= MAX_CARRIED_BYTES else int(task["id"])


def task_id(task: int | dict) -> int:
    return task if isinstance(task, int) else int(task["id"])


def chunk_job(project_id: int, run_id: str, tasks: list[int | dict]) -> dict:
    job = get_current_job()
    run = Run.load(job.connection, run_id)
    if run.superseded():
        return {"status": "superseded"}
    settings = get_settings()
    outcome = predict_and_write(project_id, tasks, settings, run, owner=job.id)
    band = outcome.pop("band", [])
    if outcome["status"] == "done":  # counted once, when the chunk completes; a crashed attempt counts nothing
        counters = ("failed", "encoded", "read_ms", "write_ms", "total_ms")
        run.chunk_done(job.id, {"done": len(tasks)} | {name: outcome[name] for name in counters})
        if band:  # the generative VLM's jobs for the chunk's uncertain frames: after CLIP, never in its way
            outcome["vlm_job"] = enqueue_vlm(
                job.connection, project_id, f"{job.id}-vlm", band, settings.job_timeout_seconds
            )
    return outcome | {"vlm_band_frames": len(band)}


def band_tasks(service: PredictionService, results: list[dict]) -> list[int]:
    """Tasks whose served uncertainty (1 - score) lies in the VLM band; none when the cascade is off."""
    if service.vlm is None:
        return []
    return [r["task"] for r in results if "result" in r and service.vlm.config.in_band(1 - r["score"])]


def predict_and_write(project_id: int, tasks: list[int | dict], settings: Settings, run: Run, owner: str) -> dict:
    """Predict the tasks that still lack the run's version and that this chunk claims; fetching and decoding
    batch k+1 overlaps batch k; frames whose embedding is cached are not fetched again. Predictions are written
    in bulk, `WRITE_BATCH` at a time. A re-scoring run superseded meanwhile stops before its next write. The
    result's `band`: the written tasks in the VLM band, when VLM jobs are on; `*_ms`: time spent reading from
    Label Studio, writing to it, and in all; `trusted_plan`: whether the planning read stood in for a re-read."""
    started = time.perf_counter()
    service = worker_service()
    client = _client(settings)
    project = str(project_id)
    version = service.model_version(project)
    if run.rescore is not None and version != run.version:  # a newer promotion serves already
        run.connection.hset(run.key, "superseded", time.time())
        return {"status": "superseded", "served": version}
    label_config = run.label_config or client.project(project_id)["label_config"]
    trusted = run.plan_trusted(owner)
    todo = [task for task in tasks if isinstance(task, dict)] if trusted else []
    to_read = [task_id(task) for task in tasks if not trusted or isinstance(task, int)]
    todo += lacking_version(client, project_id, version, ids=to_read) if to_read else []
    read_seconds = time.perf_counter() - started
    mine = claim(run.connection, project_id, version, [t["id"] for t in todo], owner, settings.job_timeout_seconds)
    todo = [task for task in todo if task["id"] in mine]
    batch = service.pipeline.scorer.batch_size
    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    written = failed = 0
    write_seconds = 0.0
    encoded_before = service.pipeline.stats.encoded
    band: list[int] = []
    pending: list[dict] = []

    def write() -> None:
        nonlocal written, write_seconds
        run.record(pending)  # first: a retry after a crash mid-import finds these written and skips them
        begun = time.perf_counter()
        client.import_predictions(
            project_id, [{k: r[k] for k in ("task", "result", "score", "model_version")} for r in pending]
        )
        hold_written(run.connection, project_id, version, [r["task"] for r in pending])
        write_seconds += time.perf_counter() - begun
        written += len(pending)
        pending.clear()

    prepare = partial(service.prepare, label_config=label_config, project=project, reuse_cached=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as prefetch:
        upcoming = prefetch.submit(prepare, batches[0]) if batches else None
        for index in range(len(batches)):
            prepared = upcoming.result()
            if index + 1 < len(batches):
                upcoming = prefetch.submit(prepare, batches[index + 1])
            results = service.finish(prepared, vlm_mode=VlmMode.OFF)
            good = [r for r in results if "result" in r]
            pending += good
            if settings.vlm_preannotate:
                band += band_tasks(service, good)
            failed += len(results) - len(good)
            if len(pending) >= WRITE_BATCH or index + 1 == len(batches):
                if run.superseded():
                    return {"status": "superseded", "written": written}
                write()
    return {
        "status": "done",
        "written": written,
        "failed": failed,
        "already_done": len(tasks) - len(todo),  # predicted before, claimed by another writer, or deleted
        "encoded": service.pipeline.stats.encoded - encoded_before,
        "band": band,
        "read_ms": round(read_seconds * 1000),
        "write_ms": round(write_seconds * 1000),
        "total_ms": round((time.perf_counter() - started) * 1000),
        "trusted_plan": trusted,
    }
