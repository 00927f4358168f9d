"""An annotator's flow in a real browser (Debian's Chromium through Playwright) against the real Label Studio,
backend and worker: log in, find the "lensguard" Data Manager tab, open the labelling stream, get the most
uncertain frame first with its pre-annotation shown (choice, explanation, brush mask drawn where the segmenter
put it), correct it, paint a stroke, submit, and see the webhook queue a training job.

A screenshot of the annotator's view is kept in LENSGUARD_TEST_ARTIFACTS (default test-artifacts/), and one of
the page at the moment of any failure."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from labelstudio.brush import rle_to_mask
from lensguard.launcher import REPO_ROOT
from tests.e2e.conftest import launch_stack
from tests.e2e.test_segmentation import HEIGHT, WIDTH, annotation, frames
from tests.services import redis_url
from training.queue import JobQueue

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
REDIS_URL = redis_url(8)
CHROMIUM = os.environ.get("LENSGUARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("LENSGUARD_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
LABELLED_DIRTY, LABELLED_CLEAN = 6, 5
LABELLED = LABELLED_DIRTY + LABELLED_CLEAN
UI_TIMEOUT_MS = 90_000

# Whether the brush layers (Konva draws the image on its first layer, regions above it) are painted at the centre of
# each image pixel, through the stage's zoom and offset; -1 for a pixel outside the view.
BRUSH_PIXELS_JS = """([width, height]) => {
  const stage = Konva.stages[0];
  const layers = [...document.querySelectorAll('.konvajs-content canvas')].slice(1);
  const fit = stage.width() / width * stage.scaleX();  // image pixels -> stage pixels
  const painted = new Int8Array(width * height);
  const pixels = layers.map(c => [c, c.getContext('2d').getImageData(0, 0, c.width, c.height).data]);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    let value = -1;
    for (const [canvas, data] of pixels) {
      const ratio = canvas.width / stage.width();
      const cx = Math.floor(((x + 0.5) * fit + stage.x()) * ratio);
      const cy = Math.floor(((y + 0.5) * fit + stage.y()) * ratio);
      if (cx < 0 || cy < 0 || cx >= canvas.width || cy >= canvas.height) continue;
      value = Math.max(value, data[(cy * canvas.width + cx) * 4 + 3] > 0 ? 1 : 0);
    }
    painted[y * width + x] = value;
  }
  return Array.from(painted);
}"""


@pytest.fixture(scope="module")
def stack(label_studio, ls_pat, tmp_path_factory):
    """Backend and worker; the annotator's submission is the annotation that reaches the training threshold."""
    settings = dict(
        auto_train_kinds="probe",
        train_min_new_annotations=str(LABELLED + 1),
        train_debounce_seconds="1",
        train_retries="0",
        preannotate_on_import="false",
        combine="classifier",
        segmenter_encoder="tu-test_resnet",
        segmenter_encoder_weights="none",
        segmenter_image_size="64x32",
        segmenter_epochs="8",
        segmenter_patience="8",
        segmenter_batch_size="4",
        segmenter_lr="0.003",
        segmenter_min_masked_frames="4",
    )
    with launch_stack(label_studio, ls_pat, tmp_path_factory.mktemp("browser"), REDIS_URL, **settings) as running:
        yield running.backend


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def train_and_predict(ls_client, backend, tmp_path: Path) -> tuple[int, list[dict]]:
    """A project whose labelled frames trained a probe and a segmenter; the other frames carry their predictions."""
    project = ls_client.sdk.projects.create(title="annotator in a browser", label_config=SOILING_XML).id
    ls_client.ensure_ml_backend(project, backend.url, basic_auth=backend.basic_auth)
    labelled = frames(LABELLED_DIRTY, True, 1) + frames(LABELLED_CLEAN, False, 2)
    held_out = frames(4, True, 3) + frames(2, False, 4)
    paths = []
    for i, frame in enumerate(labelled + held_out):
        paths.append(tmp_path / f"{i:03d}.jpg")
        paths[-1].write_bytes(frame.jpeg())
    ls_client.upload_images(project, paths)
    tasks = sorted(ls_client.tasks(project), key=lambda t: t["id"])
    for task, frame in zip(tasks, labelled, strict=False):
        ls_client.annotate(task["id"], annotation(frame))

    queue = JobQueue(REDIS_URL, retries=0)
    job_ids = [queue.enqueue_training(project, kind, reason="browser test")[0] for kind in ("probe", "segmenter")]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        jobs = [queue.job(job_id) for job_id in job_ids]
        if all(job["status"] == "finished" for job in jobs):
            break  # (on a machine loaded enough to delay heartbeats, a running job may look abandoned a while)
        time.sleep(2)
    assert [(job["result"] or {}).get("status") for job in jobs] == ["promoted", "promoted"], jobs

    held_tasks = [t["id"] for t in tasks[LABELLED:]]
    served = httpx.post(
        f"{backend.url}/setup",
        json={"project": f"{project}.1", "schema": SOILING_XML},
        auth=httpx.BasicAuth(*backend.basic_auth),
    ).json()["model_version"]
    ls_client.retrieve_predictions(project, held_tasks)  # (the promotions' re-scoring may have written them already)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        every = ls_client.predictions(project)
        predictions = [p for p in every if p["model_version"] == served and p["task"] in set(held_tasks)]
        clustered = all(p.get("cluster") is not None for p in predictions)  # (cluster ids follow the run)
        if {p["task"] for p in predictions} == set(held_tasks) and clustered:
            break
        time.sleep(1)
    assert sorted(p["task"] for p in predictions) == sorted(held_tasks), "one prediction of the served version each"
    assert "segmenter-" in served
    for older in every:  # the earlier versions' predictions stay as history; here only the served ones remain, so
        if older["id"] not in {p["id"] for p in predictions}:  # the tab's score column is the served score alone
            ls_client.request("DELETE", f"/api/predictions/{older['id']}/")
    ls_client.update_project(project, model_version=served, sampling="Uncertainty sampling")
    return project, predictions


def region(prediction: dict, from_name: str) -> dict | None:
    return next((r for r in prediction["result"] if r["from_name"] == from_name), None)


def log_in(page: Page, label_studio) -> None:
    page.goto(f"{label_studio.url}/user/login/")
    page.fill("input[name=email]", label_studio.username)
    page.fill("input[name=password]", label_studio.password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/projects.*|.*/$"), timeout=UI_TIMEOUT_MS)


def wait_for_labelling_view(page: Page) -> None:
    page.locator("[data-testid=htx-textbox-content]").first.wait_for(timeout=UI_TIMEOUT_MS)
    page.wait_for_function("document.querySelectorAll('.konvajs-content canvas').length > 1", timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # the brush regions are decoded and drawn after the image loads


def current_task(page: Page) -> int:
    return int(page.locator(".lsf-current-task").first.inner_text().split()[0].lstrip("#"))


def drawn_mask(page: Page) -> tuple[np.ndarray, np.ndarray]:
    """(painted, visible) per image pixel, as the annotator sees the frame."""
    painted = np.array(page.evaluate(BRUSH_PIXELS_JS, [WIDTH, HEIGHT]), dtype=np.int8).reshape(HEIGHT, WIDTH)
    return painted == 1, painted >= 0


def predicted_mask(prediction: dict) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    for stroke in (r for r in prediction["result"] if r["type"] == "brushlabels"):
        mask |= rle_to_mask(stroke["value"]["rle"], WIDTH, HEIGHT)
    return mask


def webhook_requests(backend) -> float:
    """Webhook requests the backend answered, from its Prometheus metrics."""
    text = httpx.get(f"{backend.url}/metrics", auth=httpx.BasicAuth(*backend.basic_auth)).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "lensguard_http_requests_total" and sample.labels.get("endpoint") == "/webhook"
    )


def check_pre_annotation(page: Page, prediction: dict) -> None:
    """The prediction as the annotator sees it: the choice selected, the explanation, the mask drawn in place."""
    choice = region(prediction, "soiling")["value"]["choices"][0]
    assert page.locator(f"input[type=radio][name='{choice}']").is_checked()
    other = "clean" if choice == "dirty" else "dirty"
    assert not page.locator(f"input[type=radio][name='{other}']").is_checked()
    shown = page.locator("[data-testid=htx-textbox-content]").first.inner_text().strip()
    assert shown == region(prediction, "explanation")["value"]["text"][0]
    assert re.search(r"P\(dirty\)=0\.\d\d", shown) and "confidence" in shown and "1 = certain" in shown
    assert "random weights" in shown.lower(), "annotators are told the model's weights are random"
    expected = predicted_mask(prediction)
    if expected.any():
        drawn, visible = drawn_mask(page)
        assert visible.mean() > 0.8, "most of the frame is in view"
        expected &= visible
        iou = (drawn & expected).sum() / (drawn | expected).sum()
        assert iou > 0.8, f"the brush mask is drawn elsewhere than predicted: IoU {iou:.2f}"


def test_annotator_corrects_a_pre_annotated_frame_in_chromium(ls_client, label_studio, stack, chromium, tmp_path):
    backend = stack
    project, predictions = train_and_predict(ls_client, backend, tmp_path)
    by_task = {p["task"]: p for p in predictions}
    most_uncertain = min(predictions, key=lambda p: p["score"])
    with_mask = next((p for p in sorted(predictions, key=lambda p: p["score"]) if predicted_mask(p).any()), None)
    assert with_mask is not None, "the segmenter draws a mask on at least one frame predicted dirty"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        log_in(page, label_studio)
        page.goto(f"{label_studio.url}/projects/{project}/data")
        tab = page.get_by_role("tab", name="lensguard")
        tab.wait_for(timeout=UI_TIMEOUT_MS)
        assert tab.get_attribute("aria-selected") == "true"
        first_row = page.get_by_test_id("table-row").first
        first_row.wait_for(timeout=UI_TIMEOUT_MS)
        header = " | ".join(page.locator(".lsf-th").all_inner_texts())
        for column in ("Prediction score", "Prediction model versio", "Prediction results"):
            assert column in header, f"the {column!r} column is shown by default: {header!r}"
        assert first_row.inner_text().split()[0] == str(most_uncertain["task"]), "most uncertain first in the tab"

        page.get_by_role("button", name="Label All Tasks").click()
        wait_for_labelling_view(page)
        assert current_task(page) == most_uncertain["task"], "the stream serves the most uncertain frame first"
        check_pre_annotation(page, by_task[current_task(page)])
        if with_mask["task"] != most_uncertain["task"]:  # the served frame was predicted clean: open a masked one
            page.goto(f"{label_studio.url}/projects/{project}/data?task={with_mask['task']}")
            wait_for_labelling_view(page)
            assert current_task(page) == with_mask["task"]
            check_pre_annotation(page, with_mask)
        page.screenshot(path=str(ARTIFACTS / "annotator-view.png"))

        task = current_task(page)
        corrected = "dirty" if region(by_task[task], "soiling")["value"]["choices"][0] == "clean" else "clean"
        page.locator(f"input[type=radio][name='{corrected}']").check()
        page.locator(".lsf-label", has_text="semi-transparent").first.click()
        image = page.locator(".konvajs-content").first.bounding_box()
        start = (image["x"] + image["width"] * 0.6, image["y"] + image["height"] * 0.3)
        page.mouse.move(*start)
        page.mouse.down()
        for step in range(1, 11):
            page.mouse.move(start[0] + step * image["width"] * 0.02, start[1] + step * image["height"] * 0.04)
        page.mouse.up()
        webhooks_before = webhook_requests(backend)
        page.get_by_test_id("bottombar-submit-button").click()

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ls_client.tasks(project, [task])[0]["annotations"]:
            time.sleep(1)
        [submitted] = ls_client.tasks(project, [task])[0]["annotations"]
        assert region(submitted, "soiling")["value"]["choices"] == [corrected]
        strokes = [r for r in submitted["result"] if r["type"] == "brushlabels"]
        assert any(r["value"]["brushlabels"] == ["semi-transparent"] for r in strokes), submitted["result"]

        auth = httpx.BasicAuth(*backend.basic_auth)
        deadline = time.monotonic() + 60
        queued: list[dict] = []
        while time.monotonic() < deadline and not queued:
            jobs = httpx.get(f"{backend.url}/jobs", auth=auth).json()["jobs"]
            reason = f"{LABELLED + 1} new annotations"
            queued = [j for j in jobs if j["project"] == str(project) and j["reason"] == reason]
            time.sleep(1)
        assert queued and queued[0]["kind"] == "probe", "the annotator's submission queued a training job"
        assert webhook_requests(backend) > webhooks_before, "Label Studio's webhook reached the backend"
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "test_browser-failure.png"), full_page=True)
        raise
    finally:
        page.close()
