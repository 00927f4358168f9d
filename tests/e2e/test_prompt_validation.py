"""`lensguard prompts eval` over a real Label Studio project, checked against a direct computation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from labelstudio.images import ImageFetcher
from labelstudio.tokens import LabelStudioAuth
from lensguard.launcher import REPO_ROOT
from models.pipeline import SoilingPipeline
from models.zero_shot import ZeroShotConfig, create_zero_shot_scorer
from training.synthetic import make_frames

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
PROMPTS = {
    "name": "e2e",
    "version": "3",
    "classes": {
        "clean": ["a clear photo from a clean camera", "clear view, no obstruction"],
        "dirty": ["lens covered with mud", "water drops on the camera lens", "obstructed camera view"],
    },
}


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lensguard.cli", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_prompt_eval_reports_figures_that_match_a_direct_computation(
    ls_client, label_studio, ls_pat, backend, tmp_path
):
    project = ls_client.sdk.projects.create(title="prompt validation", label_config=SOILING_XML).id
    paths = []
    for i, frame in enumerate(make_frames(24, 320, 180, dirty_fraction=0.5, seed=33)):
        path = tmp_path / f"{'dirty' if frame.is_dirty else 'clean'}_{i:02d}.jpg"
        path.write_bytes(frame.jpeg())
        paths.append(path)
    ls_client.upload_images(project, paths)
    tasks = ls_client.tasks(project)
    for task in tasks:
        label = "dirty" if task["data"]["image"].rsplit("-", 1)[-1].startswith("dirty") else "clean"
        ls_client.annotate(
            task["id"], [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        )
    prompts_file = tmp_path / "prompts.json"
    prompts_file.write_text(json.dumps(PROMPTS))
    env = {key: value for key, value in backend.env.items() if not key.startswith("LENSGUARD_BASIC")}
    env["LENSGUARD_DATA_DIR"] = str(tmp_path / "state")

    trained = run_cli("train", "--project", str(project), "--kind", "probe", "--inline", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads(trained.stdout)["status"] == "promoted"

    result = run_cli("prompts", "eval", "--project", str(project), "--prompts", str(prompts_file), "--open", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert result.stdout.strip().endswith("report.html")
    report = json.loads(Path(summary["report_json"]).read_text())
    assert Path(summary["report_html"]).read_text().count("data:image/png;base64,") >= 1
    assert report["split"]["select"] + report["split"]["report"] == 24
    names = {row["name"] for row in report["rows"]}
    assert any(name.startswith("active probe probe-") for name in names), "the active probe sits in the same table"
    assert {
        "e2e-v3 (set)",
        "greedy ensemble",
        "dirty: lens covered with mud",
        "clean: clear view, no obstruction",
    } <= names

    labels = np.array(report["report_frames"]["labels"])
    task_ids = report["report_frames"]["task_ids"]
    scorer = create_zero_shot_scorer(ZeroShotConfig(model_name="lensguard-tiny-ViT", pretrained=None, device="cpu"))
    fetcher = ImageFetcher(label_studio.url, LabelStudioAuth(label_studio.url, ls_pat))
    by_id = {t["id"]: t for t in tasks}
    images = fetcher.fetch_many([by_id[t]["data"]["image"] for t in task_ids])
    embeddings = np.stack(SoilingPipeline(scorer, None).embed(images))
    set_row = next(row for row in report["rows"] if row["name"] == "e2e-v3 (set)")
    direct = scorer.class_probabilities(embeddings, [PROMPTS["classes"]["clean"], PROMPTS["classes"]["dirty"]])[:, 1]
    np.testing.assert_allclose(set_row["p_dirty_report"], direct, atol=1e-4)
    for row in report["rows"]:
        p = np.array(row["p_dirty_report"])
        assert row["metrics"]["roc_auc"] == (roc_auc_score(labels, p) if len(set(labels)) == 2 else None)
        assert row["metrics"]["accuracy"] == accuracy_score(labels, p >= row["threshold"])

    used = run_cli("prompts", "use", summary["recommended_prompts"], "--project", str(project), env=backend.env)
    assert used.returncode == 0, used.stderr[-2000:]
    setup = httpx.post(
        f"{backend.url}/setup",
        json={"project": f"{project}.1", "schema": SOILING_XML},
        auth=httpx.BasicAuth(*backend.basic_auth),
    ).json()
    recommended = json.loads(Path(summary["recommended_prompts"]).read_text())
    assert f"-{recommended['name']}-v3-" in setup["model_version"], setup
