"""What builds a segmenter: architecture family, encoder or checkpoint, weights, frame geometry, inference options."""

from __future__ import annotations

from dataclasses import dataclass

from models.segmenter.tiles import NUM_CLASSES

__all__ = ["NUM_CLASSES", "SegmenterSpec"]


@dataclass(frozen=True)
class SegmenterSpec:
    arch: str = "DeepLabV3Plus"  # a family name from models.segmenter.families.FAMILIES (case-insensitive)
    # smp families: an smp encoder ("resnet18", "mobilenet_v2", "tu-<timm name>"); Mask2Former: a checkpoint
    # (hub name or local directory) or a built-in config ("tiny", "small"); TileHead: an smp encoder.
    encoder: str = "resnet18"
    encoder_weights: str | None = "imagenet"  # None: random initialisation
    image_size: tuple[int, int] = (512, 288)  # width, height frames are squashed to
    tiles: tuple[int, int] = (1, 1)  # cols, rows: the network sees windows of image_size / tiles
    overlap: float = 0.0  # fraction of a window shared with its neighbour (blended), when tiles > 1
    flips: tuple[str, ...] = ()  # test-time flips averaged with the plain pass: "h", "v"
    tile_grid: tuple[int, int] = (4, 4)  # cols, rows of the tile head's coverage grid
    allow_random_weights: bool = False  # missing pretrained weights: random initialisation instead of an error
    device: str = "auto"
