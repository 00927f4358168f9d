"""Supervised soiling classifiers, one module per kind, loaded through one registry of kinds."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.classifier.finetune import TimmClassifier
from models.classifier.probe import LinearProbe
from models.registry import ModelVersion
from models.segmenter import Segmenter

CLASSIFIER_KINDS = {"probe": LinearProbe, "finetune": TimmClassifier}
MODEL_KINDS = {**CLASSIFIER_KINDS, "segmenter": Segmenter}


class Classifier(Protocol):
    kind: str
    needs: str  # "embeddings" (CLIP image embeddings) or "pixels" (uint8 frames at image_size)

    def predict_proba(self, inputs) -> np.ndarray: ...


def load_classifier(version: ModelVersion, device: str = "auto") -> Classifier:
    """Loads any registered kind (classifiers and the segmenter) from its registry version."""
    if version.kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {version.kind!r}; known: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[version.kind].load(version.path, version.config, device)


__all__ = ["CLASSIFIER_KINDS", "MODEL_KINDS", "Classifier", "LinearProbe", "TimmClassifier", "load_classifier"]
