"""Label Studio 1.23 connects to lensguard as its ML backend and gets frames pre-annotated."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from training.synthetic import make_frames

SOILING_XML = Path(__file__).resolve().parents[2] / "labeling_config" / "soiling.xml"


def wait_for_predictions(ls_client, project_id: int, expected: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        predictions = ls_client.predictions(project_id)
        if len(predictions) >= expected or time.monotonic() > deadline:
            return predictions
        time.sleep(1)


def test_label_studio_gets_predictions_from_lensguard(ls_client, backend, tmp_path):
    config = SOILING_XML.read_text()
    project = ls_client.sdk.projects.create(title="e2e soiling", label_config=config)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    paths = []
    for i, frame in enumerate(make_frames(10, 640, 360, seed=7)):
        path = frames_dir / f"frame_{i:02d}.jpg"
        path.write_bytes(frame.jpeg())
        paths.append(path)
    corrupt = frames_dir / "zz_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert ls_client.upload_images(project.id, [*paths, corrupt]) == 11

    ml = ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=backend.basic_auth)
    assert ml["state"] == "CO", ml
    version = httpx.get(f"{backend.url}/health").json()["model_version"]
    assert ml["model_version"] == version

    tasks = ls_client.tasks(project.id)
    assert len(tasks) == 11
    ls_client.retrieve_predictions(project.id, [t["id"] for t in tasks])
    predictions = wait_for_predictions(ls_client, project.id, expected=10)

    by_task = {p["task"]: p for p in predictions}
    corrupt_task = next(t for t in tasks if t["data"]["image"].endswith("zz_corrupt.jpg"))
    assert corrupt_task["id"] not in by_task, "a frame that cannot be read gets no prediction"
    good_tasks = [t for t in tasks if t["id"] != corrupt_task["id"]]
    assert {t["id"] for t in good_tasks} == set(by_task)
    assert len(predictions) == 10, "exactly one prediction per readable frame"
    for task in good_tasks:
        prediction = by_task[task["id"]]
        assert prediction["model_version"] == version
        assert 0.0 <= prediction["score"] <= 1.0
        soiling = [r for r in prediction["result"] if r["from_name"] == "soiling"]
        assert len(soiling) == 1 and soiling[0]["value"]["choices"][0] in ("clean", "dirty")

    # An annotator opening a task sees the stored prediction; asking again does not duplicate it.
    ls_client.retrieve_predictions(project.id, [t["id"] for t in good_tasks])
    assert len(ls_client.predictions(project.id)) == 10
    auth = httpx.BasicAuth(*backend.basic_auth)
    metrics = httpx.get(f"{backend.url}/metrics", params={"format": "json"}, auth=auth).json()
    assert metrics["tasks_failed"] >= 1 and metrics["tasks_predicted"] >= 10
    log = backend.log.read_text()
    assert backend.token not in log and backend.basic_auth[1] not in log


def test_sorting_by_prediction_score_puts_uncertain_frames_first(ls_client, backend, tmp_path):
    """`score` is the confidence: Label Studio's uncertainty sampling (lowest score first) serves doubtful frames."""
    project = ls_client.sdk.projects.create(title="e2e ordering", label_config=SOILING_XML.read_text())
    paths = []
    for i, frame in enumerate(make_frames(8, 320, 180, seed=11)):
        path = tmp_path / f"f{i}.jpg"
        path.write_bytes(frame.jpeg())
        paths.append(path)
    ls_client.upload_images(project.id, paths)
    ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=backend.basic_auth)
    ls_client.retrieve_predictions(project.id)
    predictions = wait_for_predictions(ls_client, project.id, expected=8)
    assert len(predictions) == 8
    uncertainty = {p["task"]: 1 - p["score"] for p in predictions}
    version = predictions[0]["model_version"]
    ls_client.update_project(project.id, model_version=version, sampling="Uncertainty sampling")
    first = ls_client.request("GET", f"/api/projects/{project.id}/next").json()
    assert uncertainty[first["id"]] == max(uncertainty.values())
