"""A fine-tuned timm backbone with one logit (P(dirty))."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch

from models.image_model import PixelModel
from models.zero_shot.loading import resolve_device


class TimmClassifier(PixelModel):
    kind = "finetune"
    needs = "pixels"

    def __init__(self, model: torch.nn.Module, arch: str, image_size: int, device: torch.device):
        self.model = model.to(device).eval()
        self.arch = arch
        self.image_size = image_size
        self.device = device
        cfg = model.pretrained_cfg
        self._set_normalisation(cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))

    @classmethod
    def create(cls, arch: str, pretrained: bool, image_size: int, device: str = "auto") -> TimmClassifier:
        model = timm.create_model(arch, pretrained=pretrained, num_classes=1)
        return cls(model, arch, image_size, resolve_device(device))

    @torch.inference_mode()
    def predict_proba(self, pixels: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        self.model.eval()
        out = []
        for start in range(0, len(pixels), batch_size):
            x = self.to_tensor(np.stack(pixels[start : start + batch_size]))
            with self._autocast():
                out.append(self.model(x).float().sigmoid().squeeze(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def save(self, directory: Path) -> dict:
        torch.save(self.model.state_dict(), directory / "model.pt")
        return {"arch": self.arch, "image_size": self.image_size}

    @classmethod
    def load(cls, directory: Path, config: dict, device: str = "auto") -> TimmClassifier:
        model = timm.create_model(config["arch"], pretrained=False, num_classes=1)
        model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
        return cls(model, config["arch"], int(config["image_size"]), resolve_device(device))
