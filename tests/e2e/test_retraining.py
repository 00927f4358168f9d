"""Annotations in Label Studio -> webhooks -> one queued job -> a worker trains -> a better version serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lensguard.launcher import REPO_ROOT, start_worker, stop
from tests.e2e.conftest import launch_stack
from tests.services import redis_url
from training.queue import TRAIN_FUNCTION, JobQueue
from training.synthetic import make_frames

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(13)


def choice(label: str) -> list[dict]:
    return [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, tmp_path_factory):
    settings = dict(
        train_min_new_annotations="4",
        train_debounce_seconds="4",
        train_retries="0",
        auto_train_kinds="probe",
        finetune_arch="test_efficientnet",
        finetune_pretrained="false",
        finetune_image_size="64",
        finetune_epochs="500",
        finetune_patience="1000",
        finetune_batch_size="4",
    )
    root = tmp_path_factory.mktemp("retraining")
    with launch_stack(label_studio, ls_pat, root, REDIS_URL, **settings) as running:
        yield running.backend, root, running.workers  # a test may replace the worker


def api(backend, path: str, **kwargs) -> httpx.Response:
    return httpx.get(f"{backend.url}{path}", auth=httpx.BasicAuth(*backend.basic_auth), timeout=30, **kwargs)


def jobs_for(backend, project_id: int, kind: str = "probe") -> list[dict]:
    """Training jobs of one kind (the upload also queues a pre-annotation job)."""
    return [j for j in api(backend, "/jobs").json()["jobs"] if j["project"] == str(project_id) and j["kind"] == kind]


def wait_job_end(backend, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api(backend, f"/jobs/{job_id}").json()
        if job["status"] in ("finished", "failed", "stopped", "canceled"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")


def project_with_frames(ls_client, backend, tmp_path: Path, title: str, count: int, seed: int) -> tuple[int, list]:
    project = ls_client.sdk.projects.create(title=title, label_config=SOILING_XML)
    paths = []
    for i, frame in enumerate(make_frames(count, 320, 180, dirty_fraction=0.5, seed=seed)):
        path = tmp_path / f"{'dirty' if frame.is_dirty else 'clean'}_{i:03d}.jpg"
        path.write_bytes(frame.jpeg())
        paths.append(path)
    ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=backend.basic_auth)
    ls_client.upload_images(project.id, paths)
    return project.id, sorted(ls_client.tasks(project.id), key=lambda t: t["id"])


def is_dirty(task: dict) -> bool:
    return Path(task["data"]["image"]).name.split("-", 1)[1].startswith("dirty")


def test_an_annotation_burst_trains_once_and_serves_the_promoted_version(ls_client, stack, tmp_path):
    backend, _, _ = stack
    project_id, tasks = project_with_frames(ls_client, backend, tmp_path, "retrain burst", 24, seed=21)
    dirty = [t for t in tasks if is_dirty(t)]
    clean = [t for t in tasks if not is_dirty(t)]
    labelled = dirty[:8] + clean[:8]
    for task in labelled:  # Label Studio sends one ANNOTATION_CREATED webhook per annotation
        ls_client.annotate(task["id"], choice("dirty" if is_dirty(task) else "clean"))

    deadline = time.monotonic() + 60
    while not jobs_for(backend, project_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    [job] = jobs_for(backend, project_id)
    job = wait_job_end(backend, job["id"])
    time.sleep(5)  # a second job would have been queued by now
    assert len(jobs_for(backend, project_id)) == 1, "16 annotation webhooks make exactly one training job"
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["status"] == "promoted"
    assert result["version"].startswith("probe-")
    assert result["dataset"]["labelled"] == 16 and result["dataset"]["human_labels"] == 16
    assert set(result["metrics"]) == {"probe", "zero-shot"}
    assert job["progress"]["stage"] and any("promoted" in line for line in job["log"])

    version_dir = backend.data_dir / "models" / f"project-{project_id}" / "probe" / result["version"]
    assert {"probe.npz", "config.json", "metrics.json", "report.png"} <= {p.name for p in version_dir.iterdir()}

    setup = httpx.post(
        f"{backend.url}/setup",
        json={"project": f"{project_id}.1", "schema": SOILING_XML},
        auth=httpx.BasicAuth(*backend.basic_auth),
    ).json()
    assert setup["model_version"].startswith(result["version"] + "+zeroshot-")

    unlabelled = {t["id"] for t in tasks if t not in labelled}
    ls_client.retrieve_predictions(project_id, sorted(unlabelled))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        predictions = [p for p in ls_client.predictions(project_id) if p["model_version"] == setup["model_version"]]
        if unlabelled <= {p["task"] for p in predictions}:
            break
        time.sleep(1)
    # (the upload's pre-annotation run may already have predicted every task with the new version)
    predicted = [p["task"] for p in predictions]
    assert unlabelled <= set(predicted) and len(predicted) == len(set(predicted)), "each task once"
    text = next(r for r in predictions[0]["result"] if r["from_name"] == "explanation")["value"]["text"][0]
    assert text.startswith("probe classifier + zero-shot CLIP")


def test_start_training_with_one_class_ends_with_need_both_classes(ls_client, stack, tmp_path):
    backend, _, _ = stack
    project_id, tasks = project_with_frames(ls_client, backend, tmp_path, "one class", 6, seed=5)
    for task in tasks[:2]:
        ls_client.annotate(task["id"], choice("clean"))
    [ml] = ls_client.request("GET", "/api/ml", params={"project": project_id}).json()
    ls_client.request("POST", f"/api/ml/{ml['id']}/train")  # Label Studio sends START_TRAINING
    deadline = time.monotonic() + 30
    while not jobs_for(backend, project_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    [job] = jobs_for(backend, project_id)
    job = wait_job_end(backend, job["id"])
    assert job["status"] == "finished"
    assert job["result"]["status"] == "need_both_classes"


def test_a_worker_killed_mid_training_leaves_the_served_version_alone(ls_client, stack, tmp_path):
    backend, root, processes = stack
    project_id = next(
        p["id"] for p in ls_client.request("GET", "/api/projects").json()["results"] if p["title"] == "retrain burst"
    )
    auth = httpx.BasicAuth(*backend.basic_auth)
    setup = {"project": f"{project_id}.1", "schema": SOILING_XML}
    served = httpx.post(f"{backend.url}/setup", json=setup, auth=auth).json()["model_version"]
    assert served.startswith("probe-")

    queued = subprocess.run(
        [sys.executable, "-m", "lensguard.cli", "train", "--project", str(project_id), "--kind", "finetune"],
        env={**os.environ, **backend.env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = queued.stdout.split()[-1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = api(backend, f"/jobs/{job_id}").json()["progress"]
        if progress.get("stage", "").startswith("fine-tuning") and progress.get("epoch", 0) >= 1:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"fine-tuning never started: {api(backend, f'/jobs/{job_id}').json()}")

    worker = processes["worker"]
    os.killpg(worker.pid, signal.SIGKILL)  # the machine dies: the worker (running the job) and its scheduler
    worker.wait(10)

    finetune_dir = backend.data_dir / "models" / f"project-{project_id}" / "finetune"
    assert not [p for p in finetune_dir.glob("*") if not p.name.startswith(".")], "no finetune version exists"
    assert httpx.post(f"{backend.url}/setup", json=setup, auth=auth).json()["model_version"] == served

    processes["worker"] = start_worker(backend.env, root / "worker.log")  # cleans the half-written version
    deadline = time.monotonic() + 30
    while list(finetune_dir.glob(".staging-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(finetune_dir.glob(".staging-*"))

    job = wait_job_end(backend, job_id, timeout=240)  # RQ notices the missing heartbeat after about a minute
    assert job["status"] == "failed"
    assert httpx.post(f"{backend.url}/setup", json=setup, auth=auth).json()["model_version"] == served


def test_two_workers_training_one_project_at_once_promote_consistently(ls_client, stack, tmp_path):
    """Jobs of one project and kind run at the same time on two workers: compare-and-promote happens under a
    lock that re-reads the active version, so a later job compares against whatever an earlier one promoted."""
    backend, root, _ = stack
    project_id, tasks = project_with_frames(ls_client, backend, tmp_path, "two workers", 24, seed=33)
    for task in tasks[:20]:  # (these webhooks queue a job of their own too)
        ls_client.annotate(task["id"], choice("dirty" if is_dirty(task) else "clean"))
    second = start_worker(backend.env, root / "worker-second.log")
    try:
        queue = JobQueue(REDIS_URL, retries=0)
        for i in range(2):
            queue.enqueue(TRAIN_FUNCTION, (project_id, "probe", f"race {i}"), project_id, "probe", "race")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            jobs = jobs_for(backend, project_id)
            if len(jobs) >= 3 and all(j["status"] in ("finished", "failed") for j in jobs):
                break
            time.sleep(1)
    finally:
        stop(second)
    assert len(jobs) >= 3 and all(j["status"] == "finished" for j in jobs), jobs
    results = [j["result"] for j in jobs]
    active = json.loads((backend.data_dir / "models" / f"project-{project_id}" / "probe" / "active.json").read_text())
    assert active["version"] in {r["version"] for r in results if r["status"] == "promoted"}
    compared_with = [r.get("promotion", {}).get("active_version") for r in results if "promotion" in r]
    assert compared_with.count(None) == 1, "exactly one job found no active version; the others compared with it"
