"""Reading Label Studio tasks: the image URL of a task and what its annotations say."""

from __future__ import annotations

from labelstudio.label_config import SoilingTags

GROUP_KEYS = ("group", "sequence", "sequence_id", "video", "video_id", "clip", "camera", "camera_id")


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


def is_unlabelled(task: dict) -> bool:
    """No annotation other than skipped ones (a task as listed with its annotations)."""
    return not _newest_first(task)


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


def metadata_group(task: dict) -> str | None:
    """A group named by the task itself: a sequence/video/camera field in its data or meta."""
    for source in (task.get("data") or {}, task.get("meta") or {}):
        for key in GROUP_KEYS:
            value = source.get(key)
            if value not in (None, ""):
                return f"{key}:{value}"
    return None


VERSIONS_SHOWN = 500  # Label Studio cuts the Data Manager's `predictions_model_versions` text at this length


def prediction_versions(task: dict) -> set[str] | None:
    """The model versions of the task's predictions: from its `predictions` when listed with them, else from the
    Data Manager column `predictions_model_versions` ("v1, v2" on PostgreSQL, "v1,v2" on SQLite); None where
    that text may have been cut (the task's predictions must then be read)."""
    if "predictions" in task:
        return {p.get("model_version") for p in task.get("predictions") or []}
    shown = task.get("predictions_model_versions") or ""
    if isinstance(shown, list):
        return {str(v) for v in shown if v is not None}
    if len(shown) >= VERSIONS_SHOWN - 1:
        return None
    return {part.strip() for part in shown.split(",") if part.strip()}
