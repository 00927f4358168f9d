"""A logistic-regression probe on cached CLIP image embeddings: trains in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression


class LinearProbe:
    kind = "probe"
    needs = "embeddings"

    def __init__(self, weights: np.ndarray, bias: float, encoder: str):
        self.weights = np.asarray(weights, np.float32)
        self.bias = float(bias)
        self.encoder = encoder  # the image encoder whose embeddings it reads

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        labels: np.ndarray,
        encoder: str,
        sample_weight: np.ndarray | None = None,
        c: float = 1.0,
    ) -> LinearProbe:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        model.fit(embeddings, labels, sample_weight=sample_weight)
        return cls(model.coef_[0], model.intercept_[0], encoder)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        logits = np.asarray(embeddings, np.float32) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def digest(self) -> bytes:
        return self.weights.tobytes() + np.float32(self.bias).tobytes()

    def save(self, directory: Path) -> dict:
        np.savez(directory / "probe.npz", weights=self.weights, bias=np.float32(self.bias))
        return {"encoder": self.encoder, "dim": int(self.weights.shape[0])}

    @classmethod
    def load(cls, directory: Path, config: dict, device: str = "cpu") -> LinearProbe:
        data = np.load(directory / "probe.npz")
        return cls(data["weights"], float(data["bias"]), config["encoder"])
