"""The loop closes: a promotion re-scores the project in Label Studio, switches its model_version, and Label
Studio's own uncertainty sampling serves the least-solved cluster's most uncertain frame; nothing is lost or
written twice when a worker dies or when every writer runs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from lensguard.launcher import REPO_ROOT, start_worker
from models.clusters import group_cluster
from tests.e2e.conftest import launch_stack
from tests.services import redis_url
from training.synthetic import make_frames

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(12)
CAMERAS = 4


class ImageServer:
    """Frames on a plain HTTP host, as a camera archive would serve them (tasks imported as JSON)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name: str, data: bytes) -> str:
        self.files[f"/{name}"] = data
        return f"http://{self.host}/{name}"


@pytest.fixture(scope="module")
def images():
    server = ImageServer()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, images, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    settings = dict(
        allowed_image_hosts=images.host,
        allowed_image_networks="127.0.0.1/32",  # the image host is on loopback, refused unless allowed (SSRF)
        auto_train_kinds="probe",
        train_debounce_seconds="8",
        train_retries="0",
        preannotate_chunk_size="5",
    )
    workers = {"worker-preannotate": "preannotate,clusters", "worker": None}  # what `lensguard up` starts on two cores
    with launch_stack(label_studio, ls_pat, root, REDIS_URL, workers, **settings) as running:
        yield running.backend, root, running.workers


def api(backend, path: str) -> dict:
    return httpx.get(f"{backend.url}{path}", auth=httpx.BasicAuth(*backend.basic_auth), timeout=30).json()


def served_version(backend, project: int) -> str:
    body = {"project": f"{project}.1", "schema": SOILING_XML}
    return httpx.post(f"{backend.url}/setup", json=body, auth=httpx.BasicAuth(*backend.basic_auth)).json()[
        "model_version"
    ]


def import_frames(ls_client, images, title: str, count: int, seed: int) -> tuple[int, dict[int, dict]]:
    """A project whose tasks are JSON with image URLs and a camera; returns (project, task id -> frame info)."""
    frames = make_frames(count * 2, 160, 90, dirty_fraction=0.5, seed=seed)
    dirty = [f for f in frames if f.is_dirty][: count // 2]
    clean = [f for f in frames if not f.is_dirty][: count - len(dirty)]
    rows = []
    for i, frame in enumerate(dirty + clean):
        camera = f"cam{i % CAMERAS}"
        url = images.add(f"{title.replace(' ', '-')}/{i:03d}.jpg", frame.jpeg())
        rows.append({"image": url, "camera": camera, "truth": "dirty" if frame.is_dirty else "clean"})
    project = ls_client.sdk.projects.create(title=title, label_config=SOILING_XML).id
    ls_client.request("POST", f"/api/projects/{project}/import", json=rows)
    return project, {t["id"]: t["data"] for t in ls_client.tasks(project)}


def connect_like_the_ui(ls_client, backend, project: int) -> None:
    """Settings -> Model -> Connect Model (basic auth), and "Start model training on annotation submission"."""
    user, password = backend.basic_auth
    ml = ls_client.request(
        "POST",
        "/api/ml",
        json={
            "project": project,
            "url": backend.url,
            "title": "lensguard",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": user,
            "basic_auth_pass": password,
            "is_interactive": False,
        },
    ).json()
    assert ml["state"] == "CO", ml
    switched = ls_client.update_project(
        project, start_training_on_annotation_update=True, sampling="Uncertainty sampling"
    )
    assert switched["start_training_on_annotation_update"] is True


def rescore_runs(backend, project: int) -> list[dict]:
    return [j for j in api(backend, "/jobs?limit=200")["jobs"] if j["id"].startswith(f"run-{project}-rescore-")]


def wait_for_loop_to_settle(backend, project: int, timeout: float = 400) -> dict:
    """The newest re-scoring run, once no training is pending and that run switched and set its clusters."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [j for j in api(backend, "/jobs?limit=200")["jobs"] if j["project"] == str(project)]
        training = [j for j in jobs if j["kind"] == "probe" and j["status"] not in ("finished", "failed")]
        runs = sorted(rescore_runs(backend, project), key=lambda r: int(r["id"].rsplit("-", 1)[1]))
        if runs and not training:
            newest = runs[-1]
            result = newest["result"] or {}
            if (
                newest["status"] == "finished"
                and "to_cluster" in result
                and result["clustered"] == result["to_cluster"]
            ):
                return newest
        time.sleep(1)
    raise AssertionError(f"the loop did not settle: {jobs}")


def choice(label: str) -> list[dict]:
    return [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def test_a_promotion_reaches_label_studio_and_its_sampling_serves_the_least_solved_cluster(ls_client, stack, images):
    backend, _, _ = stack
    project, tasks = import_frames(ls_client, images, "loop ui", 32, seed=71)
    connect_like_the_ui(ls_client, backend, project)
    by_camera = {c: sorted(t for t, d in tasks.items() if d["camera"] == f"cam{c}") for c in range(CAMERAS)}
    labelled = []
    for camera, count in ((0, 6), (1, 4), (2, 2)):  # camera 3: nothing labelled
        dirty = [t for t in by_camera[camera] if tasks[t]["truth"] == "dirty"][: count // 2]
        clean = [t for t in by_camera[camera] if tasks[t]["truth"] == "clean"][: count // 2]
        labelled += dirty + clean
    for task in labelled:  # each submission makes Label Studio POST START_TRAINING to /webhook (basic auth)
        ls_client.annotate(task, choice(tasks[task]["truth"]))

    run = wait_for_loop_to_settle(backend, project)
    probes = [
        j for j in api(backend, "/jobs?limit=200")["jobs"] if j["project"] == str(project) and j["kind"] == "probe"
    ]
    assert any((j["result"] or {}).get("status") == "promoted" for j in probes), probes
    assert len(probes) <= 2, "a burst of submissions joins one debounced job (two when it straddles the delay)"
    version = served_version(backend, project)
    assert version.startswith("probe-") and run["result"]["version"] == version

    assert ls_client.project(project)["model_version"] == version, "Label Studio samples by the new version"
    listed = ls_client.tasks(project)
    unlabelled = [t for t in listed if t["id"] not in labelled]
    for task in unlabelled:
        mine = [p for p in task["predictions"] if p["model_version"] == version]
        assert len(mine) == 1, f"task {task['id']}: {len(mine)} predictions of {version}"
        assert mine[0]["cluster"] == group_cluster(f"camera:{task['data']['camera']}")

    solved = Counter(  # as Label Studio counts them: the highest cluster among a solved task's predictions
        max(p["cluster"] for p in t["predictions"] if p["cluster"] is not None) for t in listed if t["id"] in labelled
    )
    score = {t["id"]: next(p["score"] for p in t["predictions"] if p["model_version"] == version) for t in unlabelled}
    expected = min(unlabelled, key=lambda t: (solved[group_cluster(f"camera:{t['data']['camera']}")], score[t["id"]]))
    served = ls_client.request("GET", f"/api/projects/{project}/next").json()
    assert served["id"] == expected["id"], (served["id"], expected["id"], score)
    assert expected["data"]["camera"] == "cam3", "the cluster nobody labelled comes first"


def promote_a_prompt_set(backend, project: int, name: str) -> None:
    prompts = json.loads((REPO_ROOT / "models" / "prompt_sets" / "soiling-v1.json").read_text())
    prompts["name"] = name
    path = backend.data_dir.parent / f"{name}.json"
    path.write_text(json.dumps(prompts))
    subprocess.run(
        [sys.executable, "-m", "lensguard.cli", "prompts", "use", str(path), "--project", str(project)],
        env={**os.environ, **backend.env},
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )


def predictions_per_task(ls_client, project: int, version: str) -> Counter:
    return Counter(p["task"] for p in ls_client.predictions(project) if p["model_version"] == version)


def test_a_worker_killed_during_rescoring_loses_and_duplicates_nothing(ls_client, stack, images):
    backend, root, workers = stack
    project, tasks = import_frames(ls_client, images, "loop kill", 120, seed=72)
    connect_like_the_ui(ls_client, backend, project)
    promote_a_prompt_set(backend, project, "kill-wording")
    version = served_version(backend, project)

    deadline = time.monotonic() + 180
    while not (runs := rescore_runs(backend, project)) or runs[0]["progress"]["done"] < 30:
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    os.killpg(workers["worker-preannotate"].pid, signal.SIGKILL)  # a machine dies mid-run
    workers["worker-preannotate"].wait(10)
    workers["worker-preannotate"] = start_worker(
        backend.env, root / "worker-preannotate.log", queues="preannotate,clusters"
    )

    run = wait_for_loop_to_settle(backend, project, timeout=400)  # polling /jobs requeues the abandoned chunk
    assert run["result"]["version"] == version and run["result"]["failed"] == 0
    assert ls_client.project(project)["model_version"] == version
    per_task = predictions_per_task(ls_client, project, version)
    assert set(per_task) == set(tasks), "no task lost"
    assert set(per_task.values()) == {1}, "no task written twice"


def test_rescoring_preannotation_and_label_studio_retrieve_at_once_write_each_task_once(ls_client, stack, images):
    backend, _, _ = stack
    project, tasks = import_frames(ls_client, images, "loop race", 60, seed=73)
    connect_like_the_ui(ls_client, backend, project)
    promote_a_prompt_set(backend, project, "race-wording")  # queues the re-scoring run
    version = served_version(backend, project)
    retrieve = threading.Thread(target=ls_client.retrieve_predictions, args=(project,))  # Label Studio -> /predict
    retrieve.start()
    subprocess.run(
        [sys.executable, "-m", "lensguard.cli", "preannotate", "--project", str(project), "--all", "--follow"],
        env={**os.environ, **backend.env},
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=400,
    )
    retrieve.join(300)
    wait_for_loop_to_settle(backend, project)
    per_task = predictions_per_task(ls_client, project, version)
    assert set(per_task) == set(tasks)
    assert set(per_task.values()) == {1}, {t: n for t, n in per_task.items() if n > 1}
    assert ls_client.project(project)["model_version"] == version

    promote_a_prompt_set(backend, project, "race-wording-2")  # the next promotion: every embedding is cached
    newer = served_version(backend, project)
    run = wait_for_loop_to_settle(backend, project)
    assert run["result"]["version"] == newer and run["result"]["encoded"] == "0", "no frame encoded again"
    assert ls_client.project(project)["model_version"] == newer
    assert set(predictions_per_task(ls_client, project, newer).values()) == {1}
    assert predictions_per_task(ls_client, project, version) == per_task, "old predictions stay"
