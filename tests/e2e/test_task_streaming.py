"""Streamed task reads against real Label Studio (PostgreSQL): keyset pages in id order, only the fields asked
for, Data Manager filters, the version column, a selection of ids."""

from __future__ import annotations

import uuid

from labelstudio.client import LabelStudioClient
from labelstudio.server_flags import FAST_PREDICTION_IMPORT, slow_import_warning
from labelstudio.tasks import prediction_versions
from lensguard.launcher import REPO_ROOT
from training.select_job import ensure_tab, patch_ranks, rank_field, write_ranks
from training.task_reads import UNLABELLED, UNPREDICTED, lacking_version, unpredicted_ids

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
CHOICE = {"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": ["dirty"]}}


def test_iter_tasks_pages_by_id_with_only_the_fields_asked_for(ls_client: LabelStudioClient):
    project = ls_client.sdk.projects.create(title=f"stream-{uuid.uuid4().hex[:6]}", label_config=SOILING_XML).id
    rows = [{"image": f"/data/upload/1/f{i}.jpg", "camera": f"c{i % 3}"} for i in range(23)]
    ls_client.request("POST", f"/api/projects/{project}/import", json=rows)
    ids = [t["id"] for t in ls_client.iter_tasks(project, fields=("id",), page_size=5)]
    assert len(ids) == 23 and ids == sorted(ids), "every task once, in id order, over five pages"
    first = next(ls_client.iter_tasks(project, page_size=5))
    assert set(first) == {"id", "data"} and first["data"]["camera"] == "c0"

    ls_client.annotate(ids[0], [CHOICE])
    ls_client.import_predictions(
        project, [{"task": t, "result": [], "score": 0.5, "model_version": "v1"} for t in ids[:4]]
    )
    ls_client.import_predictions(project, [{"task": ids[1], "result": [], "score": 0.5, "model_version": "v2+x"}])
    unlabelled = [t["id"] for t in ls_client.iter_tasks(project, fields=("id",), filters=[UNLABELLED], page_size=5)]
    assert unlabelled == ids[1:]
    unpredicted = [t["id"] for t in ls_client.iter_tasks(project, fields=("id",), filters=[UNPREDICTED], page_size=4)]
    assert unpredicted == ids[4:]
    assert list(unpredicted_ids(ls_client, project, "v1", "missing")) == ids[4:]
    assert list(unpredicted_ids(ls_client, project, "v2", "all")) == ids, "v2+x is another version than v2"

    listed = {t["id"]: t for t in ls_client.iter_tasks(project, fields=("id", "predictions_model_versions"))}
    assert prediction_versions(listed[ids[1]]) == {"v1", "v2+x"} and prediction_versions(listed[ids[5]]) == set()
    chosen = [ids[1], ids[2], ids[7]]
    assert [t["id"] for t in lacking_version(ls_client, project, "v1", ids=chosen)] == [ids[7]]
    [full] = ls_client.iter_tasks(project, fields=("id", "annotations", "predictions"), ids=[ids[0]])
    assert full["annotations"][0]["result"][0]["value"]["choices"] == ["dirty"]
    assert [p["model_version"] for p in full["predictions"]] == ["v1"]


def test_label_studio_started_by_lensguard_imports_predictions_on_the_fast_path(ls_client, label_studio, ls_pat):
    assert ls_client.feature_flags() is None, "the flags page is a plain Django view: a legacy token cannot read it"
    flags = LabelStudioClient(label_studio.url, ls_pat).feature_flags()
    assert flags is not None and flags[FAST_PREDICTION_IMPORT] is True
    assert slow_import_warning(flags) is None
    assert "legacy path" in slow_import_warning({**flags, FAST_PREDICTION_IMPORT: False})
    project = ls_client.sdk.projects.create(title=f"fast-{uuid.uuid4().hex[:6]}", label_config=SOILING_XML).id
    ls_client.request("POST", f"/api/projects/{project}/import", json=[{"image": f"/f{i}.jpg"} for i in range(6)])
    ids = [t["id"] for t in ls_client.iter_tasks(project, fields=("id",))]
    ls_client.import_predictions(
        project, [{"task": t, "result": [CHOICE], "score": 0.5, "model_version": "v1"} for t in ids[:4]]
    )
    counted = {t["id"]: t["total_predictions"] for t in ls_client.iter_tasks(project, fields=("total_predictions",))}
    assert [counted[t] for t in ids] == [1, 1, 1, 1, 0, 0], "the imported tasks' counters are kept on this path"


def test_selection_ranks_are_written_and_cleared_in_bulk_and_the_tab_follows(ls_client: LabelStudioClient):
    project = ls_client.sdk.projects.create(title=f"ranks-{uuid.uuid4().hex[:6]}", label_config=SOILING_XML).id
    rows = [{"image": f"/data/upload/1/f{i}.jpg", "camera": f"c{i}"} for i in range(12)]
    ls_client.request("POST", f"/api/projects/{project}/import", json=rows)
    ids = [t["id"] for t in ls_client.iter_tasks(project, fields=("id",))]
    field = rank_field("combined")
    view = ensure_tab(ls_client, project, "ranked", field)

    def shown() -> list[int]:
        params = {"project": project, "view": view["id"], "page_size": 100}
        return [t["id"] for t in ls_client.request("GET", "/api/tasks", params=params).json()["tasks"]]

    assert write_ranks(ls_client, project, [ids[5], ids[2], ids[9]], field) == 3
    assert shown() == [ids[5], ids[2], ids[9]]
    assert write_ranks(ls_client, project, [ids[2], ids[7]], field) == 4, "two ranks changed, two cleared"
    assert shown() == [ids[2], ids[7]]
    assert write_ranks(ls_client, project, [ids[2], ids[7]], field) == 0, "unchanged ranks are not written"
    data = {t["id"]: t["data"] for t in ls_client.iter_tasks(project, ids=[ids[5], ids[2]])}
    assert data[ids[5]] == {"image": rows[5]["image"], "camera": "c5", field: 0}, "the rest of the data untouched"
    assert data[ids[2]][field] == 1 and data[ids[2]]["camera"] == "c2"

    # the fallback for servers without the action: one PATCH per task, the field removed where cleared
    patch_ranks(ls_client, project, {ids[3]: 1}, [ids[3]], {ids[2]: data[ids[2]]}, field, threads=2)
    data = {t["id"]: t["data"] for t in ls_client.iter_tasks(project, ids=[ids[2], ids[3]])}
    assert field not in data[ids[2]] and data[ids[3]] == {"image": rows[3]["image"], "camera": "c3", field: 1}
    assert shown() == [ids[3], ids[7]]
