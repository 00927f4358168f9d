"""What jobs read of a project's tasks, streamed a page at a time with only the fields each needs (see
`LabelStudioClient.iter_tasks`): never the whole project's task JSON at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from labelstudio.client import LabelStudioClient
from labelstudio.tasks import prediction_versions

UNLABELLED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
LABELLED = {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}
UNPREDICTED = {"filter": "filter:tasks:total_predictions", "operator": "equal", "type": "Number", "value": 0}
PREDICTION_FIELDS = ("id", "data", "meta", "predictions_model_versions")  # what predicting a task needs
LABELLED_PAGE = 100  # labelled tasks come with their annotations (and predictions: brush RLEs): smaller pages


def lacking_version(
    client: LabelStudioClient,
    project: int,
    version: str,
    ids: Sequence[int] | None = None,
    filters: Sequence[dict] = (),
) -> Iterator[dict]:
    """The tasks (of `ids`, or all) without a prediction of `version`, with `PREDICTION_FIELDS`. A task whose
    version list Label Studio showed cut is read again with its predictions."""
    unsure: list[int] = []
    for task in client.iter_tasks(project, fields=PREDICTION_FIELDS, filters=filters, ids=ids):
        versions = prediction_versions(task)
        if versions is None:
            unsure.append(task["id"])
        elif version not in versions:
            yield task
    for start in range(0, len(unsure), LABELLED_PAGE):
        part = unsure[start : start + LABELLED_PAGE]
        for task in client.iter_tasks(
            project, fields=(*PREDICTION_FIELDS, "predictions"), ids=part, page_size=LABELLED_PAGE
        ):
            if version not in (prediction_versions(task) or set()):
                yield {key: task[key] for key in PREDICTION_FIELDS if key in task}


def unpredicted_ids(client: LabelStudioClient, project: int, version: str, mode: str) -> Iterator[int]:
    """Ids of the tasks that need a prediction: "missing" none at all, "all" none of `version`."""
    if mode == "missing":
        yield from (task["id"] for task in client.iter_tasks(project, fields=("id",), filters=[UNPREDICTED]))
    elif mode == "all":
        yield from (task["id"] for task in lacking_version(client, project, version))
    else:
        raise ValueError(f"unknown mode {mode!r}; use 'missing' or 'all'")


def labelled_tasks(client: LabelStudioClient, project: int, fields: Sequence[str] = ()) -> Iterator[dict]:
    """Tasks with a (non-cancelled) annotation, with their annotations and any other `fields`."""
    wanted = ("id", "data", "meta", "annotations", *fields)
    page_size = min(client.page_size, LABELLED_PAGE)
    yield from client.iter_tasks(project, fields=wanted, filters=[LABELLED], page_size=page_size)


def unlabelled_tasks(client: LabelStudioClient, project: int) -> Iterator[dict]:
    """Tasks without a (non-cancelled) annotation: id, data and meta."""
    yield from client.iter_tasks(project, fields=("id", "data", "meta"), filters=[UNLABELLED])
