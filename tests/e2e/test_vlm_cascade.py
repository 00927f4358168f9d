"""The VLM cascade end to end: an upload is pre-annotated by CLIP, the band frames go to a VLM job on the VLM
queue, and each ends with a second prediction (combined model_version) carrying the VLM's TextArea text.

RANDOM WEIGHTS: a tiny random Qwen2-VL saved to a local directory by the test (LENSGUARD_VLM_MODEL points at it)
and the tiny random CLIP; the VLM's answers are noise, so its text says the answer could not be read. The band
is the whole range so every frame qualifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from lensguard.launcher import REPO_ROOT
from tests.e2e.conftest import launch_stack
from tests.services import redis_url
from tests.tiny_vlm import SMALL_FRAME_PIXELS, save_tiny_vlm
from training.synthetic import make_frames

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(14)
FRAMES = 6


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm-cascade")
    settings = dict(
        preannotate_chunk_size="4",
        train_min_new_annotations="100000",
        vlm_model=save_tiny_vlm("qwen2-vl", root / "tiny-qwen2-vl"),
        vlm_force_on_cpu="true",
        vlm_max_new_tokens="6",
        vlm_max_image_pixels=str(SMALL_FRAME_PIXELS),
        vlm_band_low="0",
        vlm_band_high="1",
    )
    with launch_stack(label_studio, ls_pat, root, REDIS_URL, **settings) as running:
        yield running.backend


def get(backend, path: str) -> dict:
    return httpx.get(f"{backend.url}{path}", auth=httpx.BasicAuth(*backend.basic_auth), timeout=30).json()


def test_band_frames_end_with_a_prediction_carrying_the_vlms_text(ls_client, stack, tmp_path):
    backend = stack
    health = get(backend, "/health")
    assert not [w for w in health["warnings"] if "VLM off" in w], health
    project = ls_client.sdk.projects.create(title="vlm cascade", label_config=SOILING_XML).id
    ls_client.ensure_ml_backend(project, backend.url, basic_auth=backend.basic_auth)  # TASKS_CREATED webhook
    paths = []
    for i, frame in enumerate(make_frames(FRAMES, 160, 90, dirty_fraction=0.5, seed=7)):
        paths.append(tmp_path / f"f{i}.jpg")
        paths[-1].write_bytes(frame.jpeg())
    assert ls_client.upload_images(project, paths) == FRAMES

    deadline = time.monotonic() + 300
    while True:
        by_task = defaultdict(list)
        for prediction in ls_client.predictions(project):
            by_task[prediction["task"]].append(prediction)
        with_vlm = {t: ps for t, ps in by_task.items() if any("+vlm-" in p["model_version"] for p in ps)}
        if len(with_vlm) == FRAMES or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(with_vlm) == FRAMES, f"every band frame gets a VLM prediction: {dict(by_task)}"
    for predictions in with_vlm.values():
        assert len(predictions) == 2, "the CLIP prediction, then the combined one; nothing twice"
        clip, combined = sorted(predictions, key=lambda p: "+vlm-" in p["model_version"])
        assert combined["model_version"].startswith(clip["model_version"] + "+cascade1-override-u0.00-1.00+vlm-")
        text = next(r for r in combined["result"] if r["from_name"] == "explanation")["value"]["text"][0]
        assert text.startswith("VLM: answer could not be read") and "zero-shot CLIP" in text
    vlm_jobs = [j for j in get(backend, "/jobs")["jobs"] if j["kind"] == "vlm" and j["project"] == str(project)]
    assert vlm_jobs and all(j["status"] == "finished" for j in vlm_jobs)
    assert sum(j["result"]["written"] for j in vlm_jobs) == FRAMES
    assert sum(j["result"]["unparsed"] for j in vlm_jobs) == FRAMES  # random weights: recorded as unparsed


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lensguard.cli", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_vlm_eval_reports_the_vlm_next_to_clip_and_the_active_classifier(ls_client, stack, tmp_path):
    backend = stack
    project = ls_client.sdk.projects.create(title="vlm eval", label_config=SOILING_XML).id
    paths = []
    for i, frame in enumerate(make_frames(16, 160, 90, dirty_fraction=0.5, seed=21)):
        paths.append(tmp_path / f"{'dirty' if frame.is_dirty else 'clean'}_{i:02d}.jpg")
        paths[-1].write_bytes(frame.jpeg())
    ls_client.upload_images(project, paths)
    for task in ls_client.tasks(project):
        label = "dirty" if task["data"]["image"].rsplit("-", 1)[-1].startswith("dirty") else "clean"
        ls_client.annotate(
            task["id"], [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        )
    env = {key: value for key, value in backend.env.items() if not key.startswith("LENSGUARD_BASIC")}
    env["LENSGUARD_DATA_DIR"] = str(tmp_path / "state")
    trained = run_cli("train", "--project", str(project), "--kind", "probe", "--inline", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]

    result = run_cli("vlm", "eval", "--project", str(project), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    report = json.loads((Path(summary["report_html"]).parent / "report.json").read_text())
    rows = report["rows"]
    assert "zero-shot CLIP" in rows and "cascade cascade1-override-u0.00-1.00" in rows
    assert any(name.startswith("served (probe probe-") for name in rows), "the active classifier, as served"
    frames = report["summary"]["frames"]
    assert frames == rows["zero-shot CLIP"]["n"] >= 4
    assert report["summary"]["cascade_share"] == 1.0  # the whole range is the band
    assert report["summary"]["vlm_unparsed"] == frames  # random weights: no VLM row, no disagreement to show
    assert report["summary"]["vlm_frames_per_second"] > 0
    assert "VLM and CLIP disagree (0 frames)" in Path(summary["report_html"]).read_text()
