"""`lensguard select`: rank a project's unlabelled frames by a strategy and show them to annotators as a
Label Studio Data Manager tab, best first.

The rank is written into each selected task's data (`lensguard_<strategy>` = 1, 2, ...), so the tab filters on
it and sorts by it, and an ML engineer can filter and sort by it anywhere in Label Studio; a new selection
replaces the previous one's ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from labelstudio.client import ActionUnavailable, LabelStudioClient
from labelstudio.label_config import parse_soiling_config
from labelstudio.tasks import metadata_group
from models.verdict import combine
from serving.components import label_studio_client
from settings import Settings
from training.grouping import assign_groups, dhash
from training.preannotate import worker_service
from training.progress import JobProgress
from training.selection import TAB_TITLES, Pool, ranked, suppress_near_duplicates
from training.task_reads import unlabelled_tasks

RANK_THREADS = 8  # concurrent rank updates


def rank_field(strategy: str) -> str:
    return "lensguard_" + strategy.replace("-", "_")


SCORE_CHUNK = 500  # tasks read, embedded and scored at a time
HASHED_PER_PICK = 4  # candidates hashed for near-duplicate groups per frame of the budget


@dataclass
class Frames:
    """The unlabelled frames that could be scored: ids, image URLs, groups named by the tasks (or None)."""

    ids: list[int] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    named: list[str | None] = field(default_factory=list)


def build_pool(tasks: Iterable[dict], label_config: str, project: str, progress: JobProgress) -> tuple[Frames, Pool]:
    """Served probabilities, zero-shot and classifier probabilities and embeddings of the frames, `SCORE_CHUNK`
    tasks at a time; frames whose embedding is cached are not fetched (unless the classifier reads pixels).
    The pool's groups are the tasks' named groups, else the task itself (see `hash_groups_of_candidates`)."""
    service = worker_service()
    active = service.classifiers.get(project) if service.classifiers else None
    classifier = active[1] if active is not None else None
    frames = Frames()
    vectors: list[np.ndarray] = []
    p_classifier: list[float] = []
    progress.stage("scoring unlabelled frames")
    for part in chunked(tasks, SCORE_CHUNK):
        batch = service.prepare(part, label_config, project, reuse_cached=True)
        embedded = service.pipeline.finish(batch.prepared)
        good = [(i, j) for j, (i, e) in enumerate(zip(batch.readable, embedded, strict=True)) if not _failed(e)]
        if not good:
            continue
        block = np.stack([embedded[j] for _, j in good])
        if classifier is not None:
            inputs = (
                block
                if classifier.needs == "embeddings"
                else service.pipeline.pixels([batch.prepared.images[j] for _, j in good], classifier.image_size)
            )
            p_classifier.extend(classifier.predict_proba(inputs).tolist())
        vectors.append(block)
        for i, _ in good:
            frames.ids.append(part[i]["id"])
            frames.urls.append(batch.urls[i] or "")
            frames.named.append(metadata_group(part[i]))
        progress.update(done=len(frames.ids))
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32)
    zero_shot = service.scorer(project).score(embeddings) if vectors else []
    p_zs = np.array([r.p_dirty for r in zero_shot])
    p_clf = np.array(p_classifier) if classifier is not None else None
    served = np.array(
        [combine(r, None if p_clf is None else p_clf[i], service.combine).p_dirty for i, r in enumerate(zero_shot)]
    )
    groups = [g or f"task:{task}" for g, task in zip(frames.named, frames.ids, strict=True)]
    return frames, Pool(served, embeddings, groups, p_zs, p_clf)


def _failed(embedding: object) -> bool:
    return isinstance(embedding, Exception)


def chunked(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    part: list[dict] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def hash_groups_of_candidates(frames: Frames, pool: Pool, candidates: np.ndarray) -> None:
    """Perceptual-hash groups (consecutive frames of one scene) among the best candidates without a named
    group: only they are fetched and hashed, so a 100k-frame project is never fetched whole for selection."""
    unnamed = [int(i) for i in candidates if frames.named[i] is None]
    fetched = worker_service().fetcher.fetch_many([frames.urls[i] for i in unnamed])
    readable = [(i, data) for i, data in zip(unnamed, fetched, strict=True) if isinstance(data, bytes)]
    hashes = []
    for _, data in readable:
        try:
            hashes.append(dhash(data))
        except (OSError, ValueError):
            hashes.append(None)
    named = assign_groups([{"id": frames.ids[i]} for i, _ in readable], hashes)
    for (i, _), group in zip(readable, named, strict=True):
        pool.groups[i] = group


def run_selection(
    project_id: int, strategy: str, budget: int, settings: Settings, progress: JobProgress, per_group: int = 1
) -> dict:
    client = label_studio_client(settings, "frames cannot be selected")
    label_config = client.project(project_id)["label_config"]
    parse_soiling_config(label_config)
    frames, pool = build_pool(unlabelled_tasks(client, project_id), label_config, str(project_id), progress)
    progress.log(f"{len(frames.ids)} unlabelled frames scored; strategy {strategy}, budget {budget}")
    chosen = np.zeros(0, dtype=int)
    if frames.ids:
        order = ranked(pool, strategy, budget)
        hash_groups_of_candidates(frames, pool, order[: budget * HASHED_PER_PICK])
        chosen = suppress_near_duplicates(order, pool.groups, pool.embeddings, per_group, limit=budget)
    selected = [frames.ids[i] for i in chosen]
    field_name = rank_field(strategy)
    changed = write_ranks(client, project_id, selected, field_name)
    title = TAB_TITLES[strategy]
    view = ensure_tab(client, project_id, title, field_name)
    progress.log(f"tab '{title}' (view {view['id']}) shows {len(selected)} frames; {changed} tasks updated")
    return {
        "strategy": strategy,
        "budget": budget,
        "selected": selected,
        "tab": title,
        "view": view["id"],
        "field": field_name,
        "updated": changed,
    }


def ranked_filter(field_name: str) -> dict:
    return {"filter": f"filter:tasks:data.{field_name}", "operator": "greater", "type": "Number", "value": 0}


def write_ranks(
    client: LabelStudioClient, project_id: int, selected: list[int], field_name: str, threads: int = RANK_THREADS
) -> int:
    """Rank the selected tasks in `field_name` and clear the rank of tasks an earlier selection picked (to 0:
    the tab shows ranks above 0); only those tasks are read (a Data Manager filter on the field), and only
    changed ranks are written. Label Studio has no bulk update of task data with a value per task: each rank is
    one request of its "add data field" action (one key of one task), `threads` at a time, and the cleared ranks
    one request in all; where the server lacks that action, one PATCH per changed task. Returns how many tasks
    were updated."""
    rank = {task_id: position + 1 for position, task_id in enumerate(selected)}
    old = {
        t["id"]: t["data"]
        for t in client.iter_tasks(project_id, fields=("id", "data"), filters=[ranked_filter(field_name)])
    }
    changed = [task for task in rank if (old.get(task) or {}).get(field_name) != rank[task]]
    cleared = [task for task in old if task not in rank]
    try:
        client.set_data_field(project_id, cleared, field_name, 0)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ranks") as pool:
            list(pool.map(lambda task: client.set_data_field(project_id, [task], field_name, rank[task]), changed))
    except ActionUnavailable:
        patch_ranks(client, project_id, rank, changed, {task: old[task] for task in cleared}, field_name, threads)
    return len(changed) + len(cleared)


def patch_ranks(
    client: LabelStudioClient,
    project_id: int,
    rank: dict[int, int],
    changed: list[int],
    cleared: dict[int, dict],
    field_name: str,
    threads: int,
) -> None:
    """The fallback: each task's whole data, with its new rank or without the field, in one PATCH."""
    data = dict(cleared)
    for task in client.iter_tasks(project_id, fields=("id", "data"), ids=changed) if changed else ():
        data[task["id"]] = {**task["data"], field_name: rank[task["id"]]}
    for task in cleared:
        data[task] = {key: value for key, value in data[task].items() if key != field_name}

    def patch(task: int) -> None:
        client.request("PATCH", f"/api/tasks/{task}", json={"data": data[task]})

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ranks") as pool:
        list(pool.map(patch, data))


def ensure_tab(client: LabelStudioClient, project_id: int, title: str, field: str) -> dict:
    """A Data Manager tab showing the tasks ranked in `field`, best (rank 1) first."""
    data = {
        "title": title,
        "type": "list",
        "filters": {
            "conjunction": "and",
            "items": [ranked_filter(field)],
        },
        "ordering": [f"tasks:data.{field}"],
        # keyed like the ordering: Label Studio then sorts the ranks as numbers (PostgreSQL compares text otherwise)
        "columnsDisplayType": {f"tasks:data.{field}": "Number"},
    }
    return client.ensure_view(project_id, title, data)
