"""What the pixel-reading models (fine-tuned classifier, segmenter) share: normalisation, autocast, digest."""

from __future__ import annotations

import contextlib

import numpy as np
import torch


class PixelModel:
    model: torch.nn.Module
    device: torch.device

    def _set_normalisation(self, mean, std) -> None:
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @property
    def normalisation(self) -> tuple[list[float], list[float]]:
        """(mean, std) per channel, for pixels scaled to [0, 1]."""
        return self._mean.view(3).tolist(), self._std.view(3).tolist()

    def to_tensor(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NxHxWx3 -> normalised float NCHW on the model's device."""
        x = torch.as_tensor(pixels).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def digest(self) -> bytes:
        return b"".join(t.detach().cpu().numpy().tobytes() for t in self.model.state_dict().values())
