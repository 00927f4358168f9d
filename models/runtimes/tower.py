"""The image tower every runtime runs: uint8 NHWC frames in, L2-normalised float embeddings out.

Normalisation sits inside the graph, so an exported model takes the decoded frames as they are and the
runtimes cannot disagree on preprocessing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class PixelTower(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, mean: Sequence[float], std: Sequence[float], normalize: bool = True):
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
        features = self.encoder(x)
        return F.normalize(features, dim=-1) if self.normalize else features


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (names, shapes, bytes): the key an exported model is cached by."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")  # 0-dim too
    return digest.hexdigest()
