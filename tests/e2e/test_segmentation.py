"""Brush masks drawn in Label Studio train a segmenter whose predictions come back as brush regions."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from labelstudio.brush import mask_to_rle, rle_to_mask
from lensguard.launcher import REPO_ROOT
from tests.e2e.conftest import launch_stack
from tests.services import redis_url
from training.synthetic import SoiledFrame, add_soiling, synthetic_scene

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(9)
WIDTH, HEIGHT = 256, 128


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, tmp_path_factory):
    settings = dict(
        auto_train_kinds="probe,segmenter",
        train_min_new_annotations="100000",
        preannotate_on_import="false",
        segmenter_encoder="tu-test_resnet",
        segmenter_encoder_weights="none",
        segmenter_image_size="128x64",
        segmenter_epochs="60",
        segmenter_patience="60",
        segmenter_batch_size="4",
        segmenter_lr="0.003",
        segmenter_min_masked_frames="6",
        combine="classifier",
    )
    with launch_stack(label_studio, ls_pat, tmp_path_factory.mktemp("segmentation"), REDIS_URL, **settings) as running:
        yield running.backend


def frames(count: int, dirty: bool, seed: int) -> list[SoiledFrame]:
    """Frames with two opaque mud blobs each (exact masks), or clean frames."""
    rng = np.random.default_rng(seed)
    scenes = [synthetic_scene(WIDTH, HEIGHT, rng) for _ in range(count)]
    if dirty:
        return [add_soiling(scene, rng, kinds=("opaque",), count=2, scale=0.3) for scene in scenes]
    return [SoiledFrame(scene, np.zeros((HEIGHT, WIDTH), np.uint8)) for scene in scenes]


def annotation(frame) -> list[dict]:
    label = "dirty" if frame.is_dirty else "clean"
    result = [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    if frame.is_dirty:
        result.append(
            {
                "from_name": "dirt_mask",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": WIDTH,
                "original_height": HEIGHT,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": mask_to_rle(frame.mask == 3), "brushlabels": ["opaque"]},
            }
        )
    return result


def test_brush_masks_train_a_segmenter_that_predicts_brush_regions(ls_client, stack, tmp_path):
    backend = stack
    project = ls_client.sdk.projects.create(title="dirt masks", label_config=SOILING_XML).id
    ls_client.ensure_ml_backend(project, backend.url, basic_auth=backend.basic_auth)
    labelled = frames(12, True, 1) + frames(12, False, 2)
    held_out = frames(8, True, 3)
    paths = []
    for i, frame in enumerate(labelled + held_out):
        paths.append(tmp_path / f"{i:03d}.jpg")
        paths[-1].write_bytes(frame.jpeg())
    ls_client.upload_images(project, paths)
    tasks = sorted(ls_client.tasks(project), key=lambda t: t["id"])
    for task, frame in zip(tasks, labelled, strict=False):
        ls_client.annotate(task["id"], annotation(frame))
    bad = annotation(labelled[0])
    bad[1]["original_width"] = WIDTH + 1  # an RLE whose size does not match the image: reported, not fatal
    ls_client.annotate(tasks[1]["id"], bad)

    [ml] = ls_client.request("GET", "/api/ml", params={"project": project}).json()
    ls_client.request("POST", f"/api/ml/{ml['id']}/train")
    auth = httpx.BasicAuth(*backend.basic_auth)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = httpx.get(f"{backend.url}/jobs", auth=auth).json()["jobs"]
        # (each promotion also queues a re-scoring job: wait for the two training jobs only)
        jobs = [j for j in listed if j["project"] == str(project) and j["kind"] in ("probe", "segmenter")]
        if len(jobs) == 2 and all(j["status"] in ("finished", "failed") for j in jobs):
            break
        time.sleep(2)
    by_kind = {j["kind"]: j for j in jobs}
    assert by_kind["segmenter"]["status"] == "finished", by_kind["segmenter"]
    result = by_kind["segmenter"]["result"]
    assert result["status"] == "promoted", result
    assert result["dataset"]["frames"]["masked"] >= 11 and result["dataset"]["problems"], "the bad RLE is reported"
    assert set(result["metrics"]["segmenter"]) == {"miou", "pixel_accuracy", "tile_coverage_mae", "tile_accuracy"}

    held_tasks = tasks[len(labelled) :]
    ls_client.retrieve_predictions(project, [t["id"] for t in held_tasks])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        predictions = {p["task"]: p for p in ls_client.predictions(project) if "segmenter-" in p["model_version"]}
        if len(predictions) == len(held_tasks):
            break
        time.sleep(1)
    ious, baseline = [], []
    for task, frame in zip(held_tasks, held_out, strict=True):
        prediction = predictions[task["id"]]
        choice = next(r for r in prediction["result"] if r["from_name"] == "soiling")["value"]["choices"]
        strokes = [r for r in prediction["result"] if r["type"] == "brushlabels"]
        if choice == ["clean"]:
            assert not strokes, "a frame predicted clean gets no brush regions"
            continue
        predicted = np.zeros((HEIGHT, WIDTH), bool)
        for stroke in strokes:
            assert (stroke["original_width"], stroke["original_height"]) == (WIDTH, HEIGHT)
            predicted |= rle_to_mask(stroke["value"]["rle"], WIDTH, HEIGHT)
        truth = frame.mask > 0
        ious.append((predicted & truth).sum() / max((predicted | truth).sum(), 1))
        baseline.append(truth.mean())  # IoU of calling the whole frame dirty
    assert ious, "the probe calls at least some soiled held-out frames dirty"
    assert np.mean(ious) > 2 * np.mean(baseline) and np.mean(ious) > 0.3, (ious, baseline)
