"""The segmenter's coverage as evidence for the frame verdict: the stacker, its choice on the frozen set in the
segmenter job, and serving it in the uncertain band."""

from __future__ import annotations

import numpy as np
import pytest

from models.coverage_stack import CoverageStack, in_band
from models.segmenter import Segmenter, SegmenterSpec, create_segmenter
from models.verdict import Verdict
from training.coverage_verdict import choose_coverage_stack
from training.metrics import roc_auc


def synthetic(count: int, informative: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(served P(dirty), N x 4 coverage, labels, groups of two frames): the served verdict is weak; coverage
    either follows the label (dirty frames have 10-60% opaque dirt) or is noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 3 == 0).astype(int)
    p = 1 / (1 + np.exp(-(0.6 * (labels - 0.5) + rng.normal(0, 1, count))))
    dirt = np.where(labels & informative, rng.uniform(0.1, 0.6, count), rng.uniform(0, 0.3, count) ** 2)
    coverage = np.zeros((count, 4))
    coverage[:, 3], coverage[:, 0] = dirt, 1 - dirt
    return p, coverage, labels, [f"g{i // 2}" for i in range(count)]


def test_informative_coverage_improves_the_verdict_and_is_enabled():
    p, coverage, labels, _ = synthetic(120, informative=True, seed=0)
    p_eval, cov_eval, y_eval, groups = synthetic(120, informative=True, seed=1)
    stack = CoverageStack.fit(p, coverage, labels)
    assert stack.weights[-1] > 0.5  # more dirt, more likely dirty
    assert roc_auc(y_eval, stack.apply(p_eval, cov_eval)) > roc_auc(y_eval, p_eval) + 0.1
    chosen, report = choose_coverage_stack((p, coverage, labels), (p_eval, cov_eval, y_eval), groups, band=0.5)
    assert chosen == stack and report["enabled"], report
    figures = report["evaluation"]
    assert figures["roc_auc_with"] > figures["roc_auc_without"] and figures["difference"]["low"] > 0
    assert (figures["frames"], figures["groups"], figures["dirty"]) == (120, 60, 40)
    assert report["decision"].startswith("better than the verdict without coverage")


def test_noise_coverage_is_not_enabled_and_barely_moves_the_verdict():
    p, coverage, labels, _ = synthetic(120, informative=False, seed=2)
    p_eval, cov_eval, y_eval, groups = synthetic(120, informative=False, seed=3)
    chosen, report = choose_coverage_stack((p, coverage, labels), (p_eval, cov_eval, y_eval), groups, band=0.5)
    assert chosen is None and not report["enabled"]
    assert report["decision"].startswith("not better than the verdict without coverage beyond noise"), report
    assert abs(report["evaluation"]["roc_auc_with"] - report["evaluation"]["roc_auc_without"]) < 0.05


def test_too_few_frames_or_one_class_give_no_stacker_and_say_why():
    p, coverage, labels, groups = synthetic(12, informative=True, seed=4)
    chosen, report = choose_coverage_stack((p[:3], coverage[:3], labels[:3]), (p, coverage, labels), groups, 0.5)
    assert chosen is None and "too few labelled frames" in report["decision"]
    clean = np.zeros(12, int)
    chosen, report = choose_coverage_stack((p, coverage, labels), (p, coverage, clean), groups, 0.5)
    assert chosen is None and "cannot tell them apart" in report["decision"]
    assert report["evaluation"]["roc_auc_without"] is None


def test_the_band_limits_where_coverage_counts():
    stack = CoverageStack((1.0, 0.0, 0.0, 0.0, 4.0), -1.0)
    p = np.array([0.05, 0.4, 0.55, 0.95])
    coverage = np.tile([0.5, 0.0, 0.0, 0.5], (4, 1))
    served = stack.apply_in_band(p, coverage, 0.2)
    assert list(in_band(p, 0.2)) == [False, True, True, False] and not in_band(0.5, 0.0)
    assert served[[0, 3]].tolist() == p[[0, 3]].tolist() and (served[[1, 2]] != p[[1, 2]]).all()


def test_the_stacker_rides_with_the_segmenter_version(tmp_path):
    stack = CoverageStack((0.9, 0.1, 0.2, 0.3, 1.5), -0.25, 2.0)
    assert CoverageStack.from_dict(stack.to_dict()) == stack
    segmenter = create_segmenter(SegmenterSpec("Unet", "tu-test_resnet", None, (64, 64), device="cpu"))
    assert "coverage_stack" not in segmenter.save(tmp_path)
    config = segmenter.with_options(coverage_stack=stack).save(tmp_path)
    loaded = Segmenter.load(tmp_path, config, device="cpu")
    assert loaded.coverage_stack == stack and loaded.with_options(flips=("h",)).coverage_stack == stack
    verdict = stack.verdict(Verdict(0.45, 0.9, source="probe classifier"), np.array([0.6, 0, 0, 0.4]), "segmenter-x")
    assert verdict.p_before_coverage == 0.45 and verdict.source.endswith("dirt coverage by segmenter-x")
    assert verdict.p_dirty == pytest.approx(float(stack.apply(0.45, np.array([0.6, 0, 0, 0.4]))[0]))


def job_settings(file_server, tmp_path, **changes):
    from settings import Settings

    values = {
        "_env_file": None,
        "label_studio_url": file_server.url,
        "clip_model": "lensguard-tiny-ViT",
        "clip_pretrained": None,
        "allow_random_weights": True,
        "device": "cpu",
        "data_dir": tmp_path,
        "segmenter_arch": "Unet",
        "segmenter_encoder": "tu-test_resnet",
        "segmenter_encoder_weights": None,
        "segmenter_image_size": (64, 64),
        "segmenter_epochs": 1,
        "segmenter_batch_size": 4,
        "segmenter_min_masked_frames": 2,
        "segmenter_loader_workers": 0,
        "auth": False,
        "runtime": "torch",
    }
    return Settings(**(values | changes))


def served_frames(file_server, count: int, seed: int) -> list[dict]:
    from tests.unit.test_segmenter_families import brush_annotation
    from training.synthetic import make_frames

    tasks = []
    for i, frame in enumerate(make_frames(count, 64, 64, dirty_fraction=0.5, seed=seed, style="realistic")):
        file_server.files[f"/data/upload/1/c{seed}-{i}.jpg"] = frame.jpeg()
        data = {"image": f"/data/upload/1/c{seed}-{i}.jpg", "group": f"g{i}"}
        annotation = {"id": i + 1, "result": brush_annotation(frame.mask)}
        tasks.append({"id": i + 1, "data": data, "annotations": [annotation]})
    return tasks


def test_the_segmenter_job_reports_the_coverage_verdict_judged_on_the_frozen_set(file_server, tmp_path, soiling_config):
    from labelstudio.label_config import parse_soiling_config
    from settings import open_model_registry
    from training.progress import JobProgress
    from training.train_job import train_on_tasks

    settings = job_settings(
        file_server,
        tmp_path,
        val_fraction=0.5,
        eval_fraction=0.3,
        eval_min_groups=2,
        promotion_resamples=200,
        coverage_verdict_band=0.5,
    )
    tasks = served_frames(file_server, 16, seed=7)
    result = train_on_tasks(1, "segmenter", parse_soiling_config(soiling_config), tasks, settings, JobProgress())
    report = result["coverage_verdict"]
    assert report["served_verdict"] == "zero-shot CLIP" and report["unscored_frames"] == 0, report
    evaluation = report["evaluation"]
    assert evaluation["frames"] == result["dataset"]["evaluation"]["frames"] > 0
    assert report["validation"]["frames"] == result["dataset"]["validation"]
    assert {"roc_auc_without", "roc_auc_with", "difference"} <= set(evaluation), report
    assert isinstance(report["enabled"], bool) and report["decision"]
    version = open_model_registry(settings).versions(1, "segmenter")[-1]
    assert version.metrics["coverage_verdict"] == report
    assert ("coverage_stack" in version.config) == report["enabled"]


def test_an_enabled_stacker_changes_band_frames_and_leaves_the_others(file_server, tmp_path, soiling_config):
    from serving.components import build_serving
    from settings import open_model_registry

    settings = job_settings(file_server, tmp_path, coverage_verdict_band=0.0)
    tasks = served_frames(file_server, 8, seed=8)
    stack = CoverageStack((1.0, 0.0, 0.0, 0.0, 3.0), -1.5)
    segmenter = create_segmenter(SegmenterSpec("Unet", "tu-test_resnet", None, (64, 64), device="cpu"))
    registry = open_model_registry(settings)
    version = registry.write_version(
        1, "segmenter", "segmenter-20250101-000000-abcdef", segmenter.with_options(coverage_stack=stack).save, {}
    )
    registry.promote(version, "test")
    service = build_serving(settings).service

    def predict() -> list[dict]:
        return service.predict(tasks, soiling_config, project="1")

    def p_dirty(prediction: dict) -> float:
        [explanation] = [r for r in prediction["result"] if r["type"] == "textarea"]
        return float(explanation["value"]["text"][0].split("P(dirty)=")[1][:4])

    before = predict()
    distance = sorted(abs(p_dirty(p) - 0.5) for p in before)
    service.coverage_band = (distance[3] + distance[4]) / 2  # half the frames in the band
    after = predict()
    changed = 0
    for old, new in zip(before, after, strict=True):
        [text] = [r["value"]["text"][0] for r in new["result"] if r["type"] == "textarea"]
        assert new["model_version"] == old["model_version"] and new["model_version"].endswith(version.name)
        if in_band(p_dirty(old), service.coverage_band):
            changed += new["score"] != old["score"]
            assert "dirt coverage by segmenter-20250101-000000-abcdef" in text
            assert "the segmenter's dirt coverage was used as evidence" in text
        else:
            assert new == old
        dirty = any(r["value"].get("choices") == ["dirty"] for r in new["result"] if r["type"] == "choices")
        assert ("dirt covers" in text) == dirty  # the mask follows the final verdict
    assert changed >= 3
