"""Soiling segmentation (segmentation-models-pytorch): 4 classes, clear + WoodScape's three soiling classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch

from models.image_model import PixelModel
from models.zero_shot.loading import resolve_device

NUM_CLASSES = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Segmenter(PixelModel):
    kind = "segmenter"
    needs = "pixels"

    def __init__(
        self, model: torch.nn.Module, arch: str, encoder: str, image_size: tuple[int, int], device: torch.device
    ):
        self.model = model.to(device).eval()
        self.arch = arch
        self.encoder = encoder
        self.image_size = tuple(image_size)  # (width, height) frames are squashed to
        self.device = device
        self._set_normalisation(IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def create(
        cls, arch: str, encoder: str, encoder_weights: str | None, image_size: tuple[int, int], device: str = "auto"
    ) -> Segmenter:
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=NUM_CLASSES)
        return cls(model, arch, encoder, image_size, resolve_device(device))

    @torch.inference_mode()
    def predict_masks(self, pixels: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """uint8 NxHxWx3 frames at image_size -> uint8 NxHxW class ids."""
        self.model.eval()
        out = []
        for start in range(0, len(pixels), batch_size):
            with self._autocast():
                logits = self.model(self.to_tensor(np.stack(pixels[start : start + batch_size])))
            out.append(logits.argmax(dim=1).to(torch.uint8).cpu().numpy())
        height, width = self.image_size[1], self.image_size[0]
        return np.concatenate(out) if out else np.zeros((0, height, width), np.uint8)

    def save(self, directory: Path) -> dict:
        torch.save(self.model.state_dict(), directory / "segmenter.pt")
        return {"arch": self.arch, "encoder": self.encoder, "image_size": list(self.image_size)}

    @classmethod
    def load(cls, directory: Path, config: dict, device: str = "auto") -> Segmenter:
        model = smp.create_model(
            config["arch"], encoder_name=config["encoder"], encoder_weights=None, classes=NUM_CLASSES
        )
        model.load_state_dict(torch.load(directory / "segmenter.pt", map_location="cpu", weights_only=True))
        return cls(model, config["arch"], config["encoder"], tuple(config["image_size"]), resolve_device(device))
