"""Choosing the segmenter's gate (minimum dirt area, per-class confidence) on the inner validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.segmenter import MaskGate

MIN_AREAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
CONFIDENCES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def frame_scores(gate: MaskGate, probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    """Balanced: the mean of (dirt IoU averaged over dirty frames) and (the share of clean frames left clean),
    so that neither blanking every frame nor painting every frame wins; either alone where the other is absent."""
    dirty_ious, clean_kept = [], []
    for p, truth in zip(probabilities, truths, strict=True):
        t, g = truth > 0, gate.apply(p) > 0
        if t.any():
            dirty_ious.append(float((t & g).sum() / (t | g).sum()))
        else:
            clean_kept.append(float(not g.any()))
    parts = [float(np.mean(part)) for part in (dirty_ious, clean_kept) if part]
    return float(np.mean(parts)) if parts else 0.0


def choose_gate(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray], step: int = 2) -> MaskGate:
    """A shared confidence first, then each class's own, then the minimum area; each kept only where it raises
    the validation score (ties keep the looser gate). Pixels subsampled by `step` for speed."""
    probabilities = [p[:, ::step, ::step] for p in probabilities]
    truths = [t[::step, ::step] for t in truths]
    best = MaskGate()
    best_score = frame_scores(best, probabilities, truths)

    def consider(gate: MaskGate) -> None:
        nonlocal best, best_score
        score = frame_scores(gate, probabilities, truths)
        if score > best_score + 1e-9:
            best, best_score = gate, score

    for confidence in CONFIDENCES:
        consider(MaskGate(best.min_area, (confidence,) * 3))
    for index in range(3):
        base = best
        for confidence in CONFIDENCES:
            thresholds = list(base.min_confidence)
            thresholds[index] = confidence
            consider(MaskGate(base.min_area, tuple(thresholds)))
    base = best
    for area in MIN_AREAS:
        consider(MaskGate(area, base.min_confidence))
    return best
