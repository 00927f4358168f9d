"""One verdict per frame from zero-shot and, when a trained classifier is active, the classifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.zero_shot.scorer import ZeroShotResult


def binary_uncertainty(p_dirty: np.ndarray | float) -> np.ndarray | float:
    """1 at p=0.5, 0 at p in {0, 1}: the distance from a confident answer."""
    return 1.0 - np.abs(2.0 * np.asarray(p_dirty) - 1.0)


def recentre(p_dirty: np.ndarray, threshold: float) -> np.ndarray:
    """Monotone map putting `threshold` at 0.5, so the verdict and the uncertainty follow a tuned threshold."""
    if threshold == 0.5:
        return p_dirty
    return np.where(
        p_dirty < threshold, 0.5 * p_dirty / threshold, 0.5 + 0.5 * (p_dirty - threshold) / (1.0 - threshold)
    )


class CombineMode(StrEnum):
    AVERAGE = "average"  # mean of zero-shot and classifier probabilities
    CLASSIFIER = "classifier"  # the classifier alone; zero-shot still names soiling types


@dataclass(frozen=True)
class Verdict:
    p_dirty: float
    uncertainty: float
    type_scores: dict[str, float] = field(default_factory=dict)
    p_zero_shot: float | None = None
    p_classifier: float | None = None
    source: str = "zero-shot CLIP"
    p_before_coverage: float | None = None  # set when the segmenter's coverage changed P(dirty) (coverage_stack)

    @property
    def is_dirty(self) -> bool:
        return self.p_dirty >= 0.5

    @property
    def confidence(self) -> float:
        return 1.0 - self.uncertainty


def combined_uncertainty(p_dirty: float, p_zero_shot: float, p_classifier: float) -> float:
    """1 - |2p - 1| widened by disagreement: equal to it when both agree, 1 when they say opposite things."""
    return float(1.0 - (1.0 - binary_uncertainty(p_dirty)) * (1.0 - abs(p_zero_shot - p_classifier)))


def combine(zero_shot: ZeroShotResult, p_classifier: float | None, mode: CombineMode, kind: str = "") -> Verdict:
    if p_classifier is None:
        return Verdict(zero_shot.p_dirty, zero_shot.uncertainty, zero_shot.type_scores, p_zero_shot=zero_shot.p_dirty)
    p_classifier = float(p_classifier)
    if mode == CombineMode.CLASSIFIER:
        p_dirty, source = p_classifier, f"{kind} classifier"
    else:
        p_dirty, source = (zero_shot.p_dirty + p_classifier) / 2, f"{kind} classifier + zero-shot CLIP"
    return Verdict(
        p_dirty=p_dirty,
        uncertainty=combined_uncertainty(p_dirty, zero_shot.p_dirty, p_classifier),
        type_scores=zero_shot.type_scores,
        p_zero_shot=zero_shot.p_dirty,
        p_classifier=p_classifier,
        source=source,
    )
