"""Reading Label Studio tasks: the image URL of a task and what its annotations say."""

from __future__ import annotations

from labelstudio.label_config import SoilingTags


class TaskError(Exception):
    """A problem with one task's data; the rest of the batch is still predicted."""


def image_url(task: dict, tags: SoilingTags) -> str:
    data = task.get("data") or {}
    url = data.get(tags.image_key)
    if not isinstance(url, str) or not url:
        raise TaskError(f"task {task.get('id')} has no '{tags.image_key}' field with an image URL")
    return url


def _newest_first(task: dict) -> list[dict]:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return sorted(annotations, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)), reverse=True)


def latest_result(task: dict) -> list[dict]:
    """The regions of the task's latest non-cancelled annotation."""
    annotations = _newest_first(task)
    return (annotations[0].get("result") or []) if annotations else []


def human_label(task: dict, tags: SoilingTags) -> int | None:
    """The clean/dirty choice of the task's latest non-cancelled annotation that makes one (1 dirty, 0 clean)."""
    for annotation in _newest_first(task):
        for region in annotation.get("result") or []:
            if region.get("from_name") == tags.soiling and region.get("type") == "choices":
                choices = (region.get("value") or {}).get("choices") or []
                if tags.dirty_label in choices:
                    return 1
                if tags.clean_label in choices:
                    return 0
    return None
