"""The fine-tuned classifier on an optimised runtime (ONNX Runtime, OpenVINO, bf16), like the CLIP tower: its
backbone up to the pooled pre-logit features is exported and checked for fidelity against fp32 PyTorch; the
one-logit head then runs in PyTorch on those features (a dot product per frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.classifier.timm_classifier import TimmClassifier
from models.runtimes import EncoderSource, FidelityFloors, RuntimeUnavailableError
from models.runtimes.base import ImageEncoder
from models.runtimes.factory import exported
from models.runtimes.fidelity import Fidelity, enforce, fidelity_frames, measure_fidelity
from models.runtimes.torch_encoder import TorchEncoder
from models.runtimes.tower import PixelTower

FIDELITY_FRAMES = 32
SPLIT_TOLERANCE = 1e-4  # the backbone + head must reproduce the whole model's logits in fp32


class PreLogits(torch.nn.Module):
    """timm's forward without the classifier: pooled (and, where the model has one, normed) features."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def head_of(classifier: TimmClassifier) -> torch.nn.Module:
    return classifier.model.get_classifier().float().cpu().eval()


def head_logits(head: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return head(torch.from_numpy(np.asarray(features, np.float32))).squeeze(1).numpy()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class RuntimeClassifier:
    """A TimmClassifier whose backbone runs on `encoder`; same interface as the classifier it came from."""

    def __init__(self, classifier: TimmClassifier, encoder: ImageEncoder, fidelity: Fidelity):
        self.classifier = classifier
        self.encoder = encoder
        self.fidelity = fidelity
        self.head = head_of(classifier)
        self.kind = classifier.kind
        self.needs = classifier.needs
        self.image_size = classifier.image_size
        self.runtime = encoder.runtime

    def predict_proba(self, pixels, batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(pixels), batch_size):
            features = self.encoder.encode(np.stack(pixels[start : start + batch_size]).astype(np.uint8, copy=False))
            out.append(sigmoid(head_logits(self.head, features)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def digest(self) -> bytes:
        return self.classifier.digest()

    def save(self, directory: Path) -> dict:
        return self.classifier.save(directory)


def classifier_tower(classifier: TimmClassifier) -> PixelTower:
    model = classifier.model.float().cpu().eval()
    return PixelTower(PreLogits(model), *classifier.normalisation, normalize=False).eval()


def on_runtime(
    classifier: TimmClassifier, runtime: str, cache_root: Path, name: str, floors: FidelityFloors
) -> RuntimeClassifier:
    """The classifier on `runtime`; FidelityError below the floors, RuntimeUnavailableError where it cannot run
    (not installed, not on this device, or a model whose head does not split off)."""
    if classifier.device.type != "cpu":
        raise RuntimeUnavailableError(
            f"{runtime} serves classifiers on the CPU only; this one is on {classifier.device}"
        )
    tower = classifier_tower(classifier)
    size = (classifier.image_size, classifier.image_size)
    frames = fidelity_frames(FIDELITY_FRAMES, size)
    reference = TorchEncoder(tower, torch.device("cpu")).encode(frames)
    head = head_of(classifier)
    if np.abs(sigmoid(head_logits(head, reference)) - classifier.predict_proba(list(frames))).max() > SPLIT_TOLERANCE:
        raise RuntimeUnavailableError(f"{classifier.arch}: its head does not split off the backbone; torch serves it")
    encoder = exported(runtime, EncoderSource(tower, name, size, torch.device("cpu"), cache_root), classifier.arch)
    fidelity = measure_fidelity(reference, encoder.encode(frames), lambda f: head_logits(head, f) >= 0)
    enforce(runtime, fidelity, floors)
    return RuntimeClassifier(classifier, encoder, fidelity)
