"""Supervised soiling classifiers, one module per kind (see models.kinds for the registry of kinds)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.classifier.probe import LinearProbe
from models.classifier.timm_classifier import TimmClassifier


class Classifier(Protocol):
    kind: str
    needs: str  # "embeddings" (CLIP image embeddings) or "pixels" (uint8 frames at image_size)

    def predict_proba(self, inputs) -> np.ndarray: ...


__all__ = ["Classifier", "LinearProbe", "TimmClassifier"]
