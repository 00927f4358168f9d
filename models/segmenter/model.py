"""Soiling segmentation (segmentation-models-pytorch): 4 classes, clear + WoodScape's three soiling classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch

from models.image_model import PixelModel
from models.segmenter.tiles import NUM_CLASSES, split_tiles, stitch_tiles
from models.zero_shot.loading import resolve_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Segmenter(PixelModel):
    kind = "segmenter"
    needs = "pixels"

    def __init__(
        self,
        model: torch.nn.Module,
        arch: str,
        encoder: str,
        image_size: tuple[int, int],
        device: torch.device,
        tiles: tuple[int, int] = (1, 1),
    ):
        self.model = model.to(device).eval()
        self.arch = arch
        self.encoder = encoder
        self.image_size = tuple(image_size)  # (width, height) frames are squashed to
        self.tiles = tuple(tiles)  # (cols, rows): the network sees tiles of image_size / tiles
        tile_w, tile_h = self.image_size[0] // self.tiles[0], self.image_size[1] // self.tiles[1]
        if tile_w * self.tiles[0] != self.image_size[0] or tile_h * self.tiles[1] != self.image_size[1]:
            raise ValueError(f"frame size {self.image_size} does not split into {self.tiles} equal tiles")
        if tile_w % 32 or tile_h % 32:
            raise ValueError(f"tiles of {tile_w}x{tile_h}: the segmenter needs sides that are multiples of 32")
        self.device = device
        self._set_normalisation(IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def create(
        cls,
        arch: str,
        encoder: str,
        encoder_weights: str | None,
        image_size: tuple[int, int],
        device: str = "auto",
        tiles: tuple[int, int] = (1, 1),
    ) -> Segmenter:
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=NUM_CLASSES)
        return cls(model, arch, encoder, image_size, resolve_device(device), tiles)

    @torch.inference_mode()
    def predict_masks(self, pixels: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """uint8 NxHxWx3 frames at image_size -> uint8 NxHxW class ids (tiles predicted apart, then stitched)."""
        self.model.eval()
        parts = [tile for frame in pixels for tile in split_tiles(frame, self.tiles)]
        out = []
        for start in range(0, len(parts), batch_size):
            with self._autocast():
                logits = self.model(self.to_tensor(np.stack(parts[start : start + batch_size])))
            out.append(logits.argmax(dim=1).to(torch.uint8).cpu().numpy())
        if not out:
            return np.zeros((0, self.image_size[1], self.image_size[0]), np.uint8)
        masks = np.concatenate(out)
        per_frame = self.tiles[0] * self.tiles[1]
        return np.stack(
            [stitch_tiles(list(masks[i : i + per_frame]), self.tiles) for i in range(0, len(masks), per_frame)]
        )

    def save(self, directory: Path) -> dict:
        torch.save(self.model.state_dict(), directory / "segmenter.pt")
        return {
            "arch": self.arch,
            "encoder": self.encoder,
            "image_size": list(self.image_size),
            "tiles": list(self.tiles),
        }

    @classmethod
    def load(cls, directory: Path, config: dict, device: str = "auto") -> Segmenter:
        model = smp.create_model(
            config["arch"], encoder_name=config["encoder"], encoder_weights=None, classes=NUM_CLASSES
        )
        model.load_state_dict(torch.load(directory / "segmenter.pt", map_location="cpu", weights_only=True))
        tiles = tuple(config.get("tiles", (1, 1)))
        return cls(model, config["arch"], config["encoder"], tuple(config["image_size"]), resolve_device(device), tiles)
