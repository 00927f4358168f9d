import re

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    roc_auc_score,
)

from labelstudio.tasks import human_label
from models.verdict import CombineMode, combine, combined_uncertainty
from models.zero_shot.scorer import ZeroShotResult
from training.grouping import SplitError, assign_groups, dhash, grouped_split, hash_groups, metadata_group
from training.metrics import best_threshold, binary_metrics
from training.synthetic import make_frames


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    metrics = binary_metrics(labels, p, threshold=0.5)
    predicted = p >= 0.5
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, p))
    assert metrics["confusion_matrix"] == confusion_matrix(labels, predicted).tolist()


def test_threshold_maximises_balanced_accuracy_or_reaches_target_recall():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.55, 0.8, 0.9])
    chosen = best_threshold(labels, p)
    assert balanced_accuracy_score(labels, p >= chosen) == max(
        balanced_accuracy_score(labels, p >= t) for t in np.unique(p)
    )
    assert best_threshold(labels, p, target_recall=1.0) == pytest.approx(0.55)


def test_metadata_groups_win_over_hashes():
    assert metadata_group({"data": {"image": "x", "sequence": "F1_1"}}) == "sequence:F1_1"
    assert metadata_group({"data": {"image": "x"}, "meta": {"camera": 3}}) == "camera:3"
    assert metadata_group({"data": {"image": "x"}}) is None


def test_near_duplicate_frames_share_a_hash_group():
    frames = make_frames(3, 320, 180, dirty_fraction=0, seed=4)
    jpegs = [frames[0].jpeg(95), frames[0].jpeg(60), frames[1].jpeg(), frames[2].jpeg()]
    hashes = [dhash(j) for j in jpegs]
    groups = hash_groups(hashes, max_distance=10)
    assert groups[0] == groups[1], "the same scene at another JPEG quality is a near-duplicate"
    assert len({groups[0], groups[2], groups[3]}) == 3
    tasks = [{"id": i, "data": {}} for i in range(4)]
    tasks[3]["data"]["group"] = "clip-7"
    named = assign_groups(tasks, hashes)
    assert named[0] == named[1] and named[3] == "group:clip-7"


def test_grouped_split_never_puts_a_group_on_both_sides():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"g{i}" for i in range(20)], 5)
    labels = np.repeat(rng.integers(0, 2, 20), 5)
    labels[:5], labels[5:10] = 0, 1
    train, val = grouped_split(labels, groups, val_fraction=0.25)
    assert not set(groups[train]) & set(groups[val])
    assert set(labels[train]) == set(labels[val]) == {0, 1}
    assert len(train) + len(val) == len(labels)


def test_grouped_split_refuses_too_few_groups():
    with pytest.raises(SplitError, match="two different groups"):
        grouped_split([0, 0, 1, 1], ["a", "a", "b", "b"])


def test_human_label_reads_the_latest_annotation_with_config_tag_names():
    from labelstudio.label_config import SoilingTags

    tags = SoilingTags("frame", "img", "lens", "Clean lens", "Dirty lens")
    region = lambda label: {"from_name": "lens", "type": "choices", "value": {"choices": [label]}}  # noqa: E731
    task = {
        "annotations": [
            {"id": 1, "updated_at": "2026-01-01", "result": [region("Clean lens")]},
            {"id": 2, "updated_at": "2026-02-01", "result": [region("Dirty lens")]},
            {"id": 3, "updated_at": "2026-03-01", "result": [region("Clean lens")], "was_cancelled": True},
        ]
    }
    assert human_label(task, tags) == 1
    assert human_label({"annotations": []}, tags) is None


def test_combined_uncertainty_grows_with_disagreement():
    assert combined_uncertainty(0.9, 0.9, 0.9) == pytest.approx(0.2)
    assert combined_uncertainty(0.5, 0.0, 1.0) == pytest.approx(1.0)
    assert combined_uncertainty(0.9, 0.8, 1.0) > combined_uncertainty(0.9, 0.9, 0.9)
    zero_shot = ZeroShotResult(p_dirty=0.8, uncertainty=0.4, type_scores={"mud": 1.0})
    average = combine(zero_shot, 0.2, CombineMode.AVERAGE, "probe")
    assert average.p_dirty == pytest.approx(0.5) and average.uncertainty == pytest.approx(1.0)
    only = combine(zero_shot, 0.2, CombineMode.CLASSIFIER, "probe")
    assert only.p_dirty == pytest.approx(0.2) and only.type_scores == {"mud": 1.0}
    assert combine(zero_shot, None, CombineMode.AVERAGE).p_dirty == pytest.approx(0.8)


def test_label_studio_down_fails_the_job_with_a_clear_message(tmp_path):
    from labelstudio.client import LabelStudioError
    from settings import Settings
    from training.progress import JobProgress
    from training.train_job import run_training

    settings = Settings(
        _env_file=None, label_studio_url="http://127.0.0.1:1", label_studio_api_key="token-123456", data_dir=tmp_path
    )
    with pytest.raises(LabelStudioError, match=re.escape("Label Studio at http://127.0.0.1:1 unreachable")):
        run_training(1, "probe", settings, JobProgress())
    with pytest.raises(ValueError, match="unknown model kind"):
        run_training(1, "svm", settings, JobProgress())


def test_finetune_trains_with_soiling_safe_augmentations_and_reports_progress():
    from training.finetune import FinetuneConfig, finetune, soiling_safe_augmentations
    from training.progress import JobProgress

    rng = np.random.default_rng(0)
    pixels = [np.full((32, 32, 3), 40 if i % 2 else 210, np.uint8) for i in range(24)]
    pixels = [np.clip(p + rng.integers(-10, 10, p.shape), 0, 255).astype(np.uint8) for p in pixels]
    labels = np.array([i % 2 for i in range(24)])
    assert soiling_safe_augmentations()(image=pixels[0])["image"].shape == (32, 32, 3)
    lines = []
    config = FinetuneConfig(arch="test_resnet", pretrained=False, image_size=32, epochs=6, batch_size=8, lr=3e-3)
    progress = JobProgress(echo=lines.append)
    model = finetune(pixels, labels, np.ones(24, np.float32), np.arange(16), np.arange(16, 24), config, progress)
    p = model.predict_proba(pixels[16:])
    assert p.shape == (8,) and ((p >= 0) & (p <= 1)).all()
    assert any("epoch=" in line and "loss=" in line for line in lines)
