"""VLM jobs: the band frames of a pre-annotation chunk get a second prediction with the combined version
(the VLM's explanation in the TextArea, its soiling types, its regions in the text). Queued on their own queue
(training.queue.VLM_QUEUE), so they run after CLIP pre-annotation and never hold it up.

Idempotent like the chunks: a task that already has a prediction of the combined version is skipped. The VLM's
parsed verdicts are kept in Redis per project for retraining's VLM pseudo-labels.
"""

from __future__ import annotations

import logging

from rq import get_current_job

from models.vlm import VlmAnswer
from serving.components import label_studio_client
from serving.vlm import VlmMode
from settings import get_settings
from training.preannotate import worker_service
from training.progress import JobProgress
from training.queue import connect
from training.task_reads import lacking_version
from training.vlm_answers import record_answers

log = logging.getLogger(__name__)


def vlm_job(project_id: int, task_ids: list[int]) -> dict:
    settings = get_settings()
    service = worker_service()
    if service.vlm is None:
        return {"status": "vlm_off", "tasks": len(task_ids)}
    progress = JobProgress()
    client = label_studio_client(settings, "tasks cannot be read or written")
    project = str(project_id)
    version = service.vlm.version(service.model_version(project))
    label_config = client.project(project_id)["label_config"]
    todo = list(lacking_version(client, project_id, version, ids=task_ids))
    progress.stage(f"asking {service.vlm.explainer.version}", total=len(todo))
    job = get_current_job()
    connection = job.connection if job is not None else connect(settings.redis_url)
    size = max(1, settings.vlm_batch_size)
    written = unparsed = 0
    for start in range(0, len(todo), size):
        answers: dict[int, VlmAnswer] = {}
        results = service.finish(
            service.prepare(todo[start : start + size], label_config, project),
            vlm_mode=VlmMode.WAIT,
            vlm_answers=answers,
        )
        combined = [
            {"task": r["task"], "result": r["result"], "score": r["score"], "model_version": r["model_version"]}
            for r in results
            if r.get("model_version") == version
        ]
        client.import_predictions(project_id, combined)
        record_answers(connection, project_id, answers, version)
        written += len(combined)
        unparsed += sum(not a.parsed for a in answers.values())
        progress.update(done=min(start + size, len(todo)))
    return {
        "status": "done",
        "written": written,
        "unparsed": unparsed,
        "not_sent": len(todo) - written,  # left the band (a newer served model) or over the hourly cap
        "already_done": len(task_ids) - len(todo),  # or deleted
        "version": version,
    }
