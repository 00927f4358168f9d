"""A soiling segmenter: any registered family's network, frames squashed to one size, optional overlapping
windows and test-time flips, a confidence/area gate; 4 classes, clear + WoodScape's three soiling classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.coverage_stack import CoverageStack
from models.image_model import PixelModel
from models.segmenter.families import build_network
from models.segmenter.spec import NUM_CLASSES, SegmenterSpec
from models.segmenter.stitching import blended_windows, tile_means, with_flips
from models.segmenter.tiles import frame_coverage
from models.zero_shot.loading import resolve_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MaskGate:
    """A pixel keeps soiling class c only when P(c) >= min_confidence[c - 1]; a frame whose remaining soiling
    covers less than min_area of it is left clear."""

    min_area: float = 0.0
    min_confidence: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """CxHxW probabilities -> HxW uint8 class ids."""
        mask = probabilities.argmax(0).astype(np.uint8)
        thresholds = np.array((0.0, *self.min_confidence), np.float32)
        mask[probabilities.max(0) < thresholds[mask]] = 0
        if (mask > 0).mean() < self.min_area:
            mask[:] = 0
        return mask


class Segmenter(PixelModel):
    kind = "segmenter"
    needs = "pixels"

    def __init__(
        self,
        model: torch.nn.Module,
        spec: SegmenterSpec,
        device: torch.device,
        weights: str = "random",
        gate: MaskGate = MaskGate(),
        coverage_stack: CoverageStack | None = None,
    ):
        self.model = model.to(device).eval()
        self.spec = spec
        self.weights = weights  # what the network was initialised from: a weights tag, checkpoint, or "random"
        self.gate = gate
        self.coverage_stack = coverage_stack  # coverage as verdict evidence, enabled on the frozen set (or None)
        self.device = device
        tiles = self.tiles
        tile_w, tile_h = self.image_size[0] // tiles[0], self.image_size[1] // tiles[1]
        if tile_w * tiles[0] != self.image_size[0] or tile_h * tiles[1] != self.image_size[1]:
            raise ValueError(f"frame size {self.image_size} does not split into {tiles} equal tiles")
        if tile_w % 32 or tile_h % 32:
            raise ValueError(f"tiles of {tile_w}x{tile_h}: the segmenter needs sides that are multiples of 32")
        if not 0 <= spec.overlap < 1 or set(spec.flips) - {"h", "v"}:
            raise ValueError(f"overlap must lie in [0, 1) and flips among 'h', 'v': got {spec.overlap}, {spec.flips}")
        self.window = (tile_w, tile_h)
        self._set_normalisation(IMAGENET_MEAN, IMAGENET_STD)

    arch = property(lambda self: self.spec.arch)
    encoder = property(lambda self: self.spec.encoder)
    image_size = property(lambda self: tuple(self.spec.image_size))  # (width, height) frames are squashed to
    tiles = property(lambda self: tuple(self.spec.tiles))  # (cols, rows) windows of image_size / tiles

    @property
    def predicts_tiles(self) -> bool:
        """True for the tile head: its coverage is predicted directly, its masks are one class per tile."""
        return hasattr(self.model, "tile_grid")

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
        spec = SegmenterSpec(arch, encoder, encoder_weights, tuple(image_size), tuple(tiles), device=device)
        return create_segmenter(spec)

    @property
    def random_init(self) -> bool:
        """Pretrained weights were asked for but could not be had: the network started from random values."""
        return self.weights == "random" and self.spec.encoder_weights is not None

    def with_options(self, **changes) -> Segmenter:
        """The same network with other inference options (overlap, flips), another gate or coverage stack."""
        gate = changes.pop("gate", self.gate)
        stack = changes.pop("coverage_stack", self.coverage_stack)
        return Segmenter(self.model, replace(self.spec, **changes), self.device, self.weights, gate, stack)

    def _input(self, pixels: np.ndarray) -> torch.Tensor:
        """What `_probabilities` reads, cut into windows and flipped: normalised NCHW on the model's device."""
        return self.to_tensor(pixels)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(x).float().softmax(dim=1)

    @torch.inference_mode()
    def predict_probabilities(self, pixels: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """uint8 NxHxWx3 frames at image_size -> float32 NxCxHxW class probabilities."""
        self.model.eval()
        out = []
        for start in range(0, len(pixels), batch_size):
            x = self._input(np.stack(pixels[start : start + batch_size]))

            def windows(frames: torch.Tensor) -> torch.Tensor:
                return blended_windows(self._probabilities, frames, self.window, self.spec.overlap)

            out.append(with_flips(windows, x, self.spec.flips).cpu().numpy())
        if not out:
            return np.zeros((0, NUM_CLASSES, self.image_size[1], self.image_size[0]), np.float32)
        return np.concatenate(out)

    def predict_masks(self, pixels: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """uint8 NxHxWx3 frames at image_size -> uint8 NxHxW class ids, after the gate."""
        probabilities = self.predict_probabilities(pixels, batch_size)
        if not len(probabilities):
            return np.zeros((0, self.image_size[1], self.image_size[0]), np.uint8)
        return np.stack([self.gate.apply(p) for p in probabilities])

    def predict_with_coverage(
        self, pixels: Sequence[np.ndarray], grid: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One pass: (uint8 NxHxW masks after the gate, N x rows x cols x C coverage on a cols x rows grid). The
        tile head's coverage is its own prediction; a segmenter's is each class's share of its mask."""
        probabilities = self.predict_probabilities(pixels)
        masks = (
            np.stack([self.gate.apply(p) for p in probabilities])
            if len(probabilities)
            else np.zeros((0, self.image_size[1], self.image_size[0]), np.uint8)
        )
        if self.predicts_tiles:
            coverage = [tile_means(p, grid) for p in probabilities]
        else:
            one_hot = np.eye(NUM_CLASSES, dtype=np.float32)
            coverage = [tile_means(one_hot[m].transpose(2, 0, 1), grid) for m in masks]
        rows_cols = (grid[1], grid[0], NUM_CLASSES)
        return masks, np.stack(coverage) if coverage else np.zeros((0, *rows_cols), np.float32)

    def predict_coverage(self, pixels: Sequence[np.ndarray], grid: tuple[int, int]) -> np.ndarray:
        return self.predict_with_coverage(pixels, grid)[1]

    def frame_coverages(self, masks: np.ndarray, tiles: np.ndarray) -> np.ndarray:
        """N x C shares of each frame per class from `predict_with_coverage`'s output: the tile head's own
        coverage averaged over its tiles, a segmenter's from its masks."""
        if self.predicts_tiles:
            return tiles.reshape(len(tiles), -1, tiles.shape[-1]).mean(1)
        return np.stack([frame_coverage(m) for m in masks]) if len(masks) else np.zeros((0, NUM_CLASSES))

    def save(self, directory: Path) -> dict:
        torch.save(self.model.state_dict(), directory / "segmenter.pt")
        config = {
            "arch": self.arch,
            "encoder": self.encoder,
            "weights": self.weights,
            "image_size": list(self.image_size),
            "tiles": list(self.tiles),
            "overlap": self.spec.overlap,
            "flips": list(self.spec.flips),
            "gate": asdict(self.gate),
        }
        if self.coverage_stack is not None:
            config["coverage_stack"] = self.coverage_stack.to_dict()
        network_config = getattr(self.model, "network_config", None)
        return config | ({"network": network_config} if network_config is not None else {})

    @classmethod
    def load(cls, directory: Path, config: dict, device: str = "auto") -> Segmenter:
        spec = SegmenterSpec(
            arch=config["arch"],
            encoder=config["encoder"],
            encoder_weights=None,
            image_size=tuple(config["image_size"]),
            tiles=tuple(config.get("tiles", (1, 1))),
            overlap=float(config.get("overlap", 0.0)),
            flips=tuple(config.get("flips", ())),
            device=device,
        )
        model, _ = build_network(spec, None, config.get("network"))
        model.load_state_dict(torch.load(directory / "segmenter.pt", map_location="cpu", weights_only=True))
        gate = config.get("gate") or {}
        gate = MaskGate(float(gate.get("min_area", 0.0)), tuple(gate.get("min_confidence", (0.0, 0.0, 0.0))))
        stack = CoverageStack.from_dict(config["coverage_stack"]) if config.get("coverage_stack") else None
        return cls(model, spec, resolve_device(device), config.get("weights", "random"), gate, stack)


def create_segmenter(spec: SegmenterSpec) -> Segmenter:
    """The one factory: a family's network from the registry, pretrained weights by the rule in build_network."""
    network, weights = build_network(spec)
    return Segmenter(network, spec, resolve_device(spec.device), weights)
