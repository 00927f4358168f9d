"""Every kind of model the registry holds, and one loader for a registry version of any of them."""

from __future__ import annotations

from models.classifier import Classifier, LinearProbe, TimmClassifier
from models.registry import ModelVersion
from models.segmenter import Segmenter

CLASSIFIER_KINDS = {"probe": LinearProbe, "finetune": TimmClassifier}
MODEL_KINDS = {**CLASSIFIER_KINDS, "segmenter": Segmenter}


def load_version(version: ModelVersion, device: str = "auto") -> Classifier | Segmenter:
    """The model stored in a registry version (a classifier or the segmenter), on `device`."""
    if version.kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {version.kind!r}; known: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[version.kind].load(version.path, version.config, device)
