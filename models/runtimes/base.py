"""What every inference runtime offers: frames in, embeddings out, plus what it is called."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class ImageEncoder(ABC):
    runtime: str  # the registry name: "torch", "onnx-int8", ...

    @abstractmethod
    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) frames at the model's input size -> float32 (N, dim) embeddings."""


class RuntimeUnavailableError(RuntimeError):
    """A runtime that cannot run here: its package is missing, or it needs hardware this machine lacks."""
