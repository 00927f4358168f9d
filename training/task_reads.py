"""What jobs read of a project's tasks, streamed a page at a time with only the fields each needs (see
`LabelStudioClient.iter_tasks`): never the whole project's task JSON at once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from labelstudio.client import LabelStudioClient
from labelstudio.tasks import prediction_versions

UNLABELLED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
LABELLED = {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}
UNPREDICTED = {"filter": "filter:tasks:total_predictions", "operator": "equal", "type": "Number", "value": 0}
PREDICTION_FIELDS = ("id", "data", "meta", "predictions_model_versions")  # what predicting a task needs
READ_AHEAD = 1000  # tasks a background reader keeps ready (two pages)
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


T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


def read_ahead(items: Iterable[T], buffered: int = READ_AHEAD) -> Iterator[T]:
    """The items of `items` in order, read by a background thread up to `buffered` ahead, so that Label Studio
    serves the next page while the caller works on this one. The reader's error is raised here; a caller that
    stops early stops the reader too."""
    box: queue.Queue = queue.Queue(maxsize=buffered)
    stopped = threading.Event()

    def put(item: object) -> bool:
        while not stopped.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the caller's thread
            put(_Failed(exc))

    threading.Thread(target=read, name="read-ahead", daemon=True).start()
    try:
        while (item := box.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stopped.set()
