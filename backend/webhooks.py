"""Label Studio webhooks -> training jobs: annotation bursts become one debounced job per project and kind."""

from __future__ import annotations

from backend.protocol import WebhookEvent, project_id
from settings import Settings
from training.queue import JobQueue

ANNOTATION_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"}
TRAINING_ACTIONS = {"START_TRAINING"}
IMPORT_ACTIONS = {"TASKS_CREATED"}


def changed_annotations(event: WebhookEvent) -> int:
    extra = event.model_extra or {}
    for key in ("annotations", "tasks"):
        if isinstance(extra.get(key), list):
            return max(len(extra[key]), 1)
    return 1


def handle_webhook(event: WebhookEvent, queue: JobQueue, settings: Settings) -> dict:
    """Raises training.queue.QueueUnavailable when Redis is down (the route answers 503)."""
    action = event.action
    if action not in ANNOTATION_ACTIONS | TRAINING_ACTIONS | IMPORT_ACTIONS:
        return {"status": "ignored", "action": action}
    project = project_id(event.project)
    if project is None:
        return {"status": "ignored", "action": action, "detail": "the event names no project"}
    if action in IMPORT_ACTIONS:
        if not settings.preannotate_on_import:
            return {"status": "ignored", "action": action, "detail": "LENSGUARD_PREANNOTATE_ON_IMPORT is off"}
        job, created = queue.enqueue_preannotation(
            project, "missing", reason=action, delay_seconds=settings.train_debounce_seconds
        )
        return {"status": "queued", "action": action, "jobs": [job], "created": [created]}
    if action in TRAINING_ACTIONS:
        jobs = [queue.enqueue_training(project, kind, reason=action) for kind in settings.auto_train_kinds]
        queue.reset_new_annotations(project)
        return {"status": "queued", "action": action, "job": jobs[0][0] if jobs else None, "jobs": [j for j, _ in jobs]}
    new = queue.count_new_annotations(project, changed_annotations(event))
    if new < settings.train_min_new_annotations:
        return {"status": "counted", "action": action, "new_annotations": new}
    jobs = [
        queue.enqueue_training(
            project, kind, reason=f"{new} new annotations", delay_seconds=settings.train_debounce_seconds
        )
        for kind in settings.auto_train_kinds
    ]
    queue.reset_new_annotations(project)
    return {"status": "queued", "action": action, "jobs": [j for j, _ in jobs], "created": [c for _, c in jobs]}
