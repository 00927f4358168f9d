"""Supervised soiling classifiers, one module per kind, loaded through one registry of kinds."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.classifier.finetune import TimmClassifier
from models.classifier.probe import LinearProbe
from models.registry import ModelVersion

CLASSIFIER_KINDS = {"probe": LinearProbe, "finetune": TimmClassifier}


class Classifier(Protocol):
    kind: str
    needs: str  # "embeddings" (CLIP image embeddings) or "pixels" (uint8 frames at image_size)

    def predict_proba(self, inputs) -> np.ndarray: ...


def load_classifier(version: ModelVersion, device: str = "auto") -> Classifier:
    if version.kind not in CLASSIFIER_KINDS:
        raise ValueError(f"unknown classifier kind {version.kind!r}; known: {sorted(CLASSIFIER_KINDS)}")
    return CLASSIFIER_KINDS[version.kind].load(version.path, version.config, device)


__all__ = ["CLASSIFIER_KINDS", "Classifier", "LinearProbe", "TimmClassifier", "load_classifier"]
