"""The frozen evaluation set, calibration and the promotion rule: decisions are made on frames that no
training run, early stopping, threshold or calibration has seen."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import Calibration
from models.registry import ModelRegistry
from training.eval_set import EVAL_SET_FILE, EvalSetError, update_eval_set
from training.grouping import grouped_split
from training.promotion import bootstrap_difference, decide


def labelled_round(start: int, groups: int, per_group: int = 3, seed: int = 0):
    """Tasks start.. in `groups` scenes of `per_group` frames, alternating clean and dirty scenes."""
    rng = np.random.default_rng(seed)
    task_ids, group_names, labels = [], [], []
    for g in range(groups):
        name = f"sequence:{start}-{g}"
        for _ in range(per_group):
            task_ids.append(start + len(task_ids))
            group_names.append(name)
            labels.append(int((g + rng.integers(2)) % 2))
    return task_ids, group_names, np.array(labels)


def test_the_evaluation_set_never_meets_training_frames_and_never_shrinks(tmp_path):
    registry = ModelRegistry(tmp_path)
    task_ids, groups, labels = [], [], np.zeros(0, int)
    eval_history: list[set[int]] = []
    for round_index in range(3):  # three rounds of new labels
        new_ids, new_groups, new_labels = labelled_round(1000 * (round_index + 1), 12, seed=round_index)
        task_ids, groups, labels = task_ids + new_ids, groups + new_groups, np.concatenate([labels, new_labels])
        split = update_eval_set(registry, 1, task_ids, groups, labels, np.ones(len(task_ids), bool), 0.25, 3)
        evaluation = {task_ids[i] for i in split.evaluation}
        pool = [task_ids[i] for i in split.pool]
        assert evaluation.isdisjoint(pool)
        assert {groups[i] for i in split.evaluation}.isdisjoint({groups[i] for i in split.pool}), "whole groups"
        train, val = grouped_split(labels[split.pool], [groups[i] for i in split.pool], 0.25)
        assert evaluation.isdisjoint({pool[i] for i in np.concatenate([train, val])})
        assert not eval_history or eval_history[-1] <= evaluation, "never shrinks"
        eval_history.append(evaluation)
    stored = registry.read_project_file(1, EVAL_SET_FILE)
    assert set(stored["tasks"]) == eval_history[-1] and stored["version"] >= 2
    assert set(labels[[task_ids.index(t) for t in eval_history[-1]]]) == {0, 1}


def test_pseudo_labels_are_never_evaluated_and_a_project_needs_enough_groups(tmp_path):
    registry = ModelRegistry(tmp_path)
    task_ids, groups, labels = labelled_round(1, 2)
    with pytest.raises(EvalSetError, match="at least 3 groups"):
        update_eval_set(registry, 2, task_ids, groups, labels, np.ones(len(task_ids), bool), 0.25, 3)
    task_ids, groups, labels = labelled_round(1, 16)
    human = np.arange(len(task_ids)) % 2 == 0
    split = update_eval_set(registry, 2, task_ids, groups, labels, human, 0.25, 3)
    assert human[split.evaluation].all()


def test_a_candidate_better_only_on_its_own_validation_split_is_not_promoted():
    rng = np.random.default_rng(3)
    groups = [f"g{i // 4}" for i in range(80)]
    labels = np.array([int(i // 4 % 2) for i in range(80)])
    active = np.clip(labels * 0.6 + rng.normal(0.2, 0.25, 80), 0, 1)
    candidate = np.clip(active + rng.normal(0, 0.02, 80), 0, 1)  # the same scorer, up to noise

    from sklearn.metrics import roc_auc_score

    def difference(frames):
        if len(set(labels[frames])) < 2:
            return None
        return roc_auc_score(labels[frames], candidate[frames]) - roc_auc_score(labels[frames], active[frames])

    compared = bootstrap_difference(groups, difference, resamples=300, confidence=0.9)
    assert compared["low"] < 0 < compared["high"]
    promote, why = decide(0.99, "probe-old", compared)  # 0.99: how good it looked on its own inner split
    assert not promote and "beyond noise" in why
    better = np.clip(labels * 0.9 + rng.normal(0.05, 0.05, 80), 0, 1)
    assert decide(1.0, "probe-old", bootstrap_difference(groups, lambda f: _auc_gap(labels, better, active, f)))[0]
    assert decide(0.5, None, None) == (True, "first version")
    few = [g for g in groups if g in {"g0", "g1", "g2", "g3"}]  # 16 frames of 4 groups, 2 of each class
    compared = bootstrap_difference(few, lambda f: _auc_gap(labels[:16], better[:16], active[:16], f))
    assert compared["low"] is None, "four groups resample into a handful of distinct sets: no interval"
    promote, why = decide(1.0, "probe-old", compared)
    assert not promote and "groups" in why


def _auc_gap(labels, new, old, frames):
    from sklearn.metrics import roc_auc_score

    if len(set(labels[frames])) < 2:
        return None
    return roc_auc_score(labels[frames], new[frames]) - roc_auc_score(labels[frames], old[frames])


def test_calibration_on_an_inner_split_improves_log_loss_on_held_out_frames():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    labels = rng.integers(2, size=2000)
    true_logit = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.2, 2000)
    overconfident = 1 / (1 + np.exp(-4 * true_logit))  # a classifier far too sure of itself
    fit, held_out = np.arange(1000), np.arange(1000, 2000)
    calibration = Calibration.fit(overconfident[fit], labels[fit])
    before = log_loss(labels[held_out], overconfident[held_out])
    after = log_loss(labels[held_out], calibration.calibrated(overconfident[held_out]))
    assert after < before * 0.8
    thresholded = calibration.with_threshold(0.7)
    raw = np.linspace(0.001, 0.999, 999)
    served = thresholded(raw)
    assert ((served >= 0.5) == (thresholded.calibrated(raw) >= 0.7)).all(), "the chosen threshold serves at 0.5"
    assert (np.diff(served) >= 0).all(), "monotone: the ranking (and ROC-AUC) is unchanged"


def test_the_fast_promotion_figures_equal_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from training.metrics import metric_value

    rng = np.random.default_rng(1)
    for _ in range(20):
        labels, scores = rng.integers(2, size=40), np.round(rng.random(40), 1)  # ties included
        assert metric_value("roc_auc", labels, scores) == pytest.approx(roc_auc_score(labels, scores))
        assert metric_value("balanced_accuracy", labels, scores) == pytest.approx(
            balanced_accuracy_score(labels, scores >= 0.5)
        )
