"""A project's labeling config and tasks, read through Label Studio's API for a job."""

from __future__ import annotations

from labelstudio.label_config import SoilingTags, parse_soiling_config
from serving.components import label_studio_client
from settings import Settings
from training.progress import JobProgress


def export_project(project_id: int, settings: Settings, progress: JobProgress) -> tuple[SoilingTags, list[dict]]:
    """The project's tags and its tasks with annotations."""
    client = label_studio_client(settings, "annotations cannot be exported")
    tags = parse_soiling_config(client.project(project_id)["label_config"])
    progress.stage("exporting annotations from Label Studio")
    tasks = client.tasks(project_id)
    progress.log(f"{len(tasks)} tasks exported")
    return tags, tasks
