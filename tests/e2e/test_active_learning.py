"""Uploads pre-annotated in chunks by two workers (one killed halfway), then selections shown as tabs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from lensguard.launcher import REPO_ROOT
from tests.e2e.conftest import launch_stack
from tests.services import redis_url
from training.synthetic import make_frames

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(11)
FRAMES = 200


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, tmp_path_factory):
    settings = dict(
        train_debounce_seconds="10",
        preannotate_chunk_size="10",
        train_min_new_annotations="100000",
    )
    root = tmp_path_factory.mktemp("active-learning")
    with launch_stack(label_studio, ls_pat, root, REDIS_URL, {"worker0": None, "worker1": None}, **settings) as running:
        yield running.backend, list(running.workers.values())


def get(backend, path: str) -> dict:
    return httpx.get(f"{backend.url}{path}", auth=httpx.BasicAuth(*backend.basic_auth), timeout=30).json()


def test_an_upload_is_preannotated_exactly_once_even_when_a_worker_dies(ls_client, stack, tmp_path):
    backend, workers = stack
    project = ls_client.sdk.projects.create(title="fleet upload", label_config=SOILING_XML).id
    ls_client.ensure_ml_backend(project, backend.url, basic_auth=backend.basic_auth)  # webhook incl. TASKS_CREATED
    paths = []
    for i, frame in enumerate(make_frames(FRAMES, 160, 90, dirty_fraction=0.3, seed=44)):
        path = tmp_path / f"f{i:03d}.jpg"
        path.write_bytes(frame.jpeg())
        paths.append(path)
    assert ls_client.upload_images(project, paths) == FRAMES  # 4 imports -> 4 TASKS_CREATED webhooks

    deadline = time.monotonic() + 120
    run_id = None
    while run_id is None and time.monotonic() < deadline:
        plans = [
            j for j in get(backend, "/jobs")["jobs"] if j["project"] == str(project) and j["kind"] == "preannotate"
        ]
        finished = [j for j in plans if j["status"] == "finished"]
        run_id = finished[0]["result"]["run"] if finished else None
        time.sleep(0.5)
    assert run_id, "the import webhooks queued a planning job"
    assert len(plans) == 1, "four import webhooks, one planning job"

    while (run := get(backend, f"/jobs/{run_id}"))["progress"]["done"] < FRAMES * 0.3:
        assert time.monotonic() < deadline + 120, run
        time.sleep(0.2)
    os.killpg(workers[0].pid, signal.SIGKILL)  # one machine dies mid-run
    workers[0].wait(10)

    deadline = time.monotonic() + 300
    while (run := get(backend, f"/jobs/{run_id}"))["status"] != "finished":  # polling also requeues abandoned chunks
        assert time.monotonic() < deadline, run
        time.sleep(1)
    assert run["progress"]["total"] == FRAMES and run["result"]["failed"] == 0
    version = run["result"]["version"]
    predictions = ls_client.predictions(project)
    per_task = Counter(p["task"] for p in predictions if p["model_version"] == version)
    assert len(per_task) == FRAMES, "no task missed"
    assert set(per_task.values()) == {1}, "no task predicted twice"

    again = subprocess.run(
        [sys.executable, "-m", "lensguard.cli", "preannotate", "--project", str(project), "--all", "--follow"],
        env={**os.environ, **backend.env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"total": 0' in again.stdout, "a rerun finds nothing left to do"
    assert len(ls_client.predictions(project)) == len(predictions)


def test_selections_become_label_studio_tabs_best_first(ls_client, stack):
    backend, _ = stack
    project = next(
        p["id"] for p in ls_client.request("GET", "/api/projects").json()["results"] if p["title"] == "fleet upload"
    )
    env = {**os.environ, **backend.env}
    for strategy, budget in [("least-confident", 12), ("likely-dirty", 8)]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lensguard.cli",
                "select",
                "--project",
                str(project),
                "--strategy",
                strategy,
                "--budget",
                str(budget),
            ],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        selection = json.loads(result.stdout)
        # near-duplicates are suppressed, so a pool of look-alike synthetic frames may not fill the budget
        assert 0 < len(selection["selected"]) <= budget
        views = ls_client.request("GET", "/api/dm/views", params={"project": project}).json()
        view = next(v for v in views if v["data"]["title"] == selection["tab"])
        shown = ls_client.request(
            "GET", "/api/tasks", params={"project": project, "view": view["id"], "page_size": 100}
        ).json()
        assert [t["id"] for t in shown["tasks"]] == selection["selected"], "the tab shows the selection, best first"
        scores = {p["task"]: p["score"] for p in ls_client.predictions(project)}
        confidence = [scores[t] for t in selection["selected"]]
        if strategy == "least-confident":
            assert confidence == sorted(confidence)
    titles = {v["data"]["title"] for v in ls_client.request("GET", "/api/dm/views", params={"project": project}).json()}
    assert {"Label first: uncertain", "Draw masks: likely dirty"} <= titles
