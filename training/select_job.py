"""`lensguard select`: rank a project's unlabelled frames by a strategy and show them to annotators as a
Label Studio Data Manager tab, best first.

The rank is written into each selected task's data (`lensguard_<strategy>` = 1, 2, ...), so the tab filters on
it and sorts by it, and an ML engineer can filter and sort by it anywhere in Label Studio; a new selection
replaces the previous one's ranks.
"""

from __future__ import annotations

import numpy as np

from labelstudio.client import LabelStudioClient
from labelstudio.label_config import SoilingTags, parse_soiling_config
from labelstudio.tasks import human_label
from models.verdict import combine
from serving.components import build_fetcher, label_studio_client
from settings import Settings
from training.frames import fetch_in_chunks, task_image
from training.grouping import assign_groups, dhash
from training.preannotate import worker_service
from training.progress import JobProgress
from training.selection import TAB_TITLES, Pool, select


def rank_field(strategy: str) -> str:
    return "lensguard_" + strategy.replace("-", "_")


def build_pool(tasks: list[dict], tags: SoilingTags, project: str, settings: Settings, progress: JobProgress):
    """Served probabilities, zero-shot and classifier probabilities, embeddings and groups of the frames."""
    service = worker_service()
    fetcher = build_fetcher(settings)
    active = service.classifiers.get(project) if service.classifiers else None
    scorer = service.scorer(project)
    kept, vectors, hashes, p_classifier = [], [], [], []
    progress.stage("scoring unlabelled frames", total=len(tasks))
    for chunk in fetch_in_chunks(fetcher, tasks, lambda t: task_image(t, tags.image_key), progress):
        readable = [(t, b) for t, b in chunk if isinstance(b, bytes)]
        embedded = service.pipeline.embed([b for _, b in readable])
        good = [(t, b, e) for (t, b), e in zip(readable, embedded, strict=True) if not isinstance(e, Exception)]
        if good and active is not None:
            classifier = active[1]
            inputs = (
                np.stack([e for _, _, e in good])
                if classifier.needs == "embeddings"
                else service.pipeline.pixels([b for _, b, _ in good], classifier.image_size)
            )
            p_classifier.extend(classifier.predict_proba(inputs).tolist())
        for task, data, vector in good:
            kept.append(task)
            vectors.append(vector)
            hashes.append(dhash(data))
    embeddings = np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)
    zero_shot = scorer.score(embeddings) if vectors else []
    p_zs = np.array([r.p_dirty for r in zero_shot])
    p_clf = np.array(p_classifier) if active is not None else None
    served = np.array(
        [combine(r, None if p_clf is None else p_clf[i], service.combine).p_dirty for i, r in enumerate(zero_shot)]
    )
    groups = assign_groups(kept, hashes)
    return kept, Pool(served, embeddings, groups, p_zs, p_clf)


def run_selection(
    project_id: int, strategy: str, budget: int, settings: Settings, progress: JobProgress, per_group: int = 1
) -> dict:
    client = label_studio_client(settings, "frames cannot be selected")
    tags = parse_soiling_config(client.project(project_id)["label_config"])
    tasks = client.tasks(project_id)
    unlabelled = [t for t in tasks if human_label(t, tags) is None and not t.get("annotations")]
    progress.log(f"{len(unlabelled)} unlabelled of {len(tasks)} tasks; strategy {strategy}, budget {budget}")
    kept, pool = build_pool(unlabelled, tags, str(project_id), settings, progress)
    chosen = select(pool, strategy, budget, per_group) if kept else np.zeros(0, dtype=int)
    selected = [kept[i]["id"] for i in chosen]
    field = rank_field(strategy)
    write_ranks(client, tasks, selected, field)
    title = TAB_TITLES[strategy]
    view = ensure_tab(client, project_id, title, field)
    progress.log(f"tab '{title}' (view {view['id']}) shows {len(selected)} frames")
    return {
        "strategy": strategy,
        "budget": budget,
        "selected": selected,
        "tab": title,
        "view": view["id"],
        "field": field,
    }


def write_ranks(client: LabelStudioClient, tasks: list[dict], selected: list[int], field: str) -> None:
    rank = {task_id: position + 1 for position, task_id in enumerate(selected)}
    for task in tasks:
        data = dict(task.get("data") or {})
        if task["id"] in rank:
            data[field] = rank[task["id"]]
        elif field in data:
            del data[field]  # picked by an earlier selection, not by this one
        else:
            continue
        client.request("PATCH", f"/api/tasks/{task['id']}", json={"data": data})


def ensure_tab(client: LabelStudioClient, project_id: int, title: str, field: str) -> dict:
    """A Data Manager tab showing the tasks ranked in `field`, best (rank 1) first."""
    data = {
        "title": title,
        "type": "list",
        "filters": {
            "conjunction": "and",
            "items": [{"filter": f"filter:tasks:data.{field}", "operator": "greater", "type": "Number", "value": 0}],
        },
        "ordering": [f"tasks:data.{field}"],
        "columnsDisplayType": {f"data.{field}": "Number"},
    }
    for view in client.request("GET", "/api/dm/views", params={"project": project_id}).json():
        if (view.get("data") or {}).get("title") == title:
            return client.request(
                "PATCH", f"/api/dm/views/{view['id']}", json={"project": project_id, "data": data}
            ).json()
    return client.request("POST", "/api/dm/views", json={"project": project_id, "data": data}).json()
