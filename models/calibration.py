"""Calibrated, thresholded classifier probabilities: Platt scaling fitted on held-out frames, then the version's
chosen threshold moved to 0.5, so a served P(dirty) and its verdict mean what the version's report says."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.verdict import recentre

EPSILON = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibration:
    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = 0.5  # on the calibrated scale; served at 0.5

    @classmethod
    def fit(cls, p_dirty: np.ndarray, labels: np.ndarray) -> Calibration:
        """Platt scaling on the logit of the raw probability (identity where a class is missing)."""
        labels = np.asarray(labels).astype(int)
        if len(np.unique(labels)) < 2:
            return cls()
        model = LogisticRegression(C=1.0).fit(_logit(p_dirty).reshape(-1, 1), labels)
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]))

    def calibrated(self, p_dirty: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * _logit(p_dirty) + self.intercept)))

    def __call__(self, p_dirty: np.ndarray) -> np.ndarray:
        """Raw classifier probabilities -> calibrated, with the chosen threshold at 0.5."""
        return recentre(self.calibrated(p_dirty), self.threshold)

    def with_threshold(self, threshold: float) -> Calibration:
        return Calibration(self.slope, self.intercept, float(threshold))

    def to_json(self) -> dict:
        return asdict(self)


class CalibratedClassifier:
    """A classifier whose predict_proba serves calibrated, thresholded probabilities."""

    def __init__(self, classifier, calibration: Calibration):
        self.classifier = classifier
        self.calibration = calibration
        self.kind = classifier.kind
        self.needs = classifier.needs

    @property
    def image_size(self):
        return getattr(self.classifier, "image_size", None)

    @property
    def random_init(self) -> bool:
        return bool(getattr(self.classifier, "random_init", False))

    def predict_proba(self, inputs) -> np.ndarray:
        return self.calibration(self.classifier.predict_proba(inputs))

    def digest(self) -> bytes:
        return self.classifier.digest() + np.asarray(list(asdict(self.calibration).values())).tobytes()

    def save(self, directory) -> dict:
        return {**self.classifier.save(directory), "calibration": self.calibration.to_json()}
