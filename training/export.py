"""A project's labeling config and tasks, read through Label Studio's API for a job."""

from __future__ import annotations

from labelstudio.label_config import SoilingTags, parse_soiling_config
from serving.components import label_studio_client
from settings import Settings
from training.progress import JobProgress
from training.task_reads import labelled_tasks, unlabelled_tasks


def export_project(project_id: int, settings: Settings, progress: JobProgress) -> tuple[SoilingTags, list[dict]]:
    """The project's tags and its labelled tasks (id, data, meta, annotations: no predictions), plus its
    unlabelled tasks (id, data, meta) where pseudo-labels may train on them."""
    client = label_studio_client(settings, "annotations cannot be exported")
    tags = parse_soiling_config(client.project(project_id)["label_config"])
    progress.stage("exporting annotations from Label Studio")
    tasks = list(labelled_tasks(client, project_id))
    progress.log(f"{len(tasks)} labelled tasks exported")
    if settings.pseudo_labels or settings.vlm_pseudo_labels:
        tasks += unlabelled_tasks(client, project_id)
        progress.log(f"{len(tasks)} tasks with the unlabelled ones (pseudo-labels)")
    return tags, tasks
