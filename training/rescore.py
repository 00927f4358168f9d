"""Promotion reaches Label Studio: every promotion queues a re-scoring run of the project's unlabelled tasks with
the newly served combination; the run's last chunk sets the project's `model_version` to it, so Label Studio's
uncertainty sampling switches to the new scores in one step and never to a version without predictions.

Runs are numbered per project; a newer promotion's run supersedes older ones (their remaining chunks stop
without writing and they never switch `model_version`). Old predictions stay, as history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from rq import get_current_job

from labelstudio.client import LabelStudioClient
from serving.components import label_studio_client
from settings import Settings, get_settings
from training.preannotate import server_warnings, start_chunks, worker_service
from training.progress import JobProgress
from training.queue import RESCORE_FUNCTION, JobQueue, QueueUnavailable
from training.runs import RESCORE_SEQUENCE_KEY, newest_rescore
from training.task_reads import UNLABELLED, labelled_tasks, lacking_version

log = logging.getLogger(__name__)


def enqueue_rescore(project_id: int, reason: str, settings: Settings | None = None) -> str | None:
    """Queue the re-scoring run of a promotion (the promotion stands even where Redis is unreachable)."""
    settings = settings or get_settings()
    try:
        queue = JobQueue(settings.redis_url, settings.job_timeout_seconds, settings.train_retries)
        sequence = int(queue.connection.incr(RESCORE_SEQUENCE_KEY.format(project=project_id)))
        return queue.enqueue(RESCORE_FUNCTION, (project_id, sequence, reason), project_id, "rescore", reason)
    except (QueueUnavailable, redis.RedisError) as exc:
        log.warning("project %s: re-scoring not queued (%s); `lensguard preannotate --all` catches up", project_id, exc)
        return None


def has_cluster(task: dict) -> bool:
    """Whether any of the task's predictions carries a cluster (Label Studio reads the clusters an annotator
    solved from the predictions of labelled tasks)."""
    return any(p.get("cluster") is not None for p in task.get("predictions") or [])


def rescore_tasks(client: LabelStudioClient, project_id: int, version: str) -> Iterator[dict]:
    """Unlabelled tasks without a prediction of `version`; labelled ones without any clustered prediction."""
    yield from lacking_version(client, project_id, version, filters=[UNLABELLED])
    yield from (task for task in labelled_tasks(client, project_id, ("predictions",)) if not has_cluster(task))


def plan_rescore(project_id: int, sequence: int, reason: str = "promotion") -> dict:
    """What a worker runs: list the unlabelled tasks lacking the served version, and start their chunks."""
    job = get_current_job()
    if newest_rescore(job.connection, project_id) > sequence:
        return {"status": "superseded", "sequence": sequence}
    settings = get_settings()
    version = worker_service().model_version(str(project_id))
    client = label_studio_client(settings, "tasks cannot be re-scored")
    planned_from = time.time()
    todo = list(rescore_tasks(client, project_id, version))
    project = client.project(project_id)
    JobProgress().log(f"re-scoring {len(todo)} of {project.get('task_number')} tasks with {version} ({reason})")
    run_id = f"run-{project_id}-rescore-{sequence}"
    size = settings.rescore_chunk_size
    planned = start_chunks(
        job,
        run_id,
        project_id,
        version,
        todo,
        settings,
        size,
        rescore=sequence,
        planned_from=planned_from,
        label_config=project["label_config"],
    )
    return planned | server_warnings(client)
