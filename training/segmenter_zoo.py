"""Judging segmenters the way the product uses them: dirt found on dirty frames, none drawn on clean ones,
tile coverage, and how well predicted coverage ranks dirty frames above clean ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

FALSE_ALARM_AREA = 0.01  # a clean frame with more predicted dirt than this is a false alarm


def dirt_metrics(
    truths: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    true_coverage: np.ndarray,
    predicted_coverage: np.ndarray,
) -> dict:
    """truths/masks: HxW class ids (0 clear); coverages: N x rows x cols x C (clear first).

    dirt_iou_dirty_mean: dirt IoU averaged over frames with true dirt; dirt_iou_pooled: intersection over union
    of all frames' pixels together; false_alarm_rate: share of clean frames with > 1% predicted dirt;
    tile_coverage_mae: mean absolute error of the dirt share per tile; coverage_auc: ROC-AUC of the predicted
    dirt share of the frame as a dirty-frame score."""
    dirty_ious, intersection, union, false_alarms, clean = [], 0, 0, 0, 0
    for truth, mask in zip(truths, masks, strict=True):
        t, p = truth > 0, mask > 0
        inter, uni = int((t & p).sum()), int((t | p).sum())
        intersection, union = intersection + inter, union + uni
        if t.any():
            dirty_ious.append(inter / uni)
        else:
            clean += 1
            false_alarms += int(p.mean() > FALSE_ALARM_AREA)
    true_dirt = 1 - true_coverage[..., 0]
    predicted_dirt = 1 - predicted_coverage[..., 0]
    labels = np.array([t.any() for t in truths])
    score = predicted_dirt.reshape(len(labels), -1).mean(1)
    return {
        "dirt_iou_dirty_mean": float(np.mean(dirty_ious)) if dirty_ious else None,
        "dirt_iou_pooled": intersection / union if union else None,
        "false_alarm_rate": false_alarms / clean if clean else None,
        "tile_coverage_mae": float(np.abs(true_dirt - predicted_dirt).mean()),
        "coverage_auc": float(roc_auc_score(labels, score)) if 0 < labels.sum() < len(labels) else None,
    }


def few_masks(indices: np.ndarray, dirty: np.ndarray, count: int | None, seed: int = 0) -> np.ndarray:
    """All clean frames of `indices` plus `count` of its dirty ones (all when None): the few-label regime, where
    annotators have drawn only a handful of masks."""
    dirty_part = indices[dirty[indices]]
    if count is not None and count < len(dirty_part):
        dirty_part = np.random.default_rng(seed).choice(dirty_part, count, replace=False)
    return np.sort(np.concatenate([indices[~dirty[indices]], dirty_part]))
