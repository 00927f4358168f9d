"""TiledSoilingNet-style tile head: per-tile class coverage predicted directly, no per-pixel decoder.

An smp encoder's deepest features are pooled onto a cols x rows grid and a 1x1 head gives each tile NUM_CLASSES
logits; softmax over them is the tile's predicted coverage per class. The forward repeats each tile's log-scores
over its pixels, so the segmenter's pixel cross-entropy against a brush mask is exactly the soft-target
cross-entropy against the mask's tile coverage: the same brush masks train it, through the same loop.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from models.segmenter.spec import NUM_CLASSES, SegmenterSpec


class TileHead(nn.Module):
    def __init__(self, encoder: nn.Module, grid: tuple[int, int], hidden: int = 128):
        super().__init__()
        self.encoder = encoder
        self.tile_grid = tuple(grid)  # cols, rows
        self.head = nn.Sequential(
            nn.Conv2d(encoder.out_channels[-1], hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(hidden, NUM_CLASSES, 1),
        )

    def tile_logits(self, x: torch.Tensor) -> torch.Tensor:
        """N x NUM_CLASSES x rows x cols."""
        cols, rows = self.tile_grid
        features = self.encoder(x)[-1]
        return self.head(F.adaptive_avg_pool2d(features, (rows, cols)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.tile_logits(x), size=x.shape[-2:], mode="nearest")


def build(spec: SegmenterSpec, weights: str | None, network_config: dict | None = None) -> nn.Module:
    grid = tuple((network_config or {}).get("tile_grid", spec.tile_grid))
    return TileHead(smp.encoders.get_encoder(spec.encoder, weights=weights), grid)
