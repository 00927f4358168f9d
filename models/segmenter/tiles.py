"""Tile-level soiling coverage, as TiledSoilingNet reports it: per tile, the fraction of each class."""

from __future__ import annotations

import numpy as np

from models.labels import SOILING_CLASSES

NUM_CLASSES = len(SOILING_CLASSES)  # clear plus WoodScape's transparent, semi-transparent and opaque


def tile_coverage(mask: np.ndarray, grid: tuple[int, int] = (4, 4)) -> np.ndarray:
    """(rows, cols, classes) fractions on a grid of (cols, rows) tiles, split as evenly as the size allows."""
    cols, rows = grid
    height, width = mask.shape
    ys = np.linspace(0, height, rows + 1).astype(int)
    xs = np.linspace(0, width, cols + 1).astype(int)
    out = np.zeros((rows, cols, NUM_CLASSES), np.float32)
    for r in range(rows):
        for c in range(cols):
            tile = mask[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]
            if tile.size:
                out[r, c] = np.bincount(tile.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] / tile.size
    return out


def frame_coverage(mask: np.ndarray) -> np.ndarray:
    """Fraction of the frame per class (clear first)."""
    return np.bincount(mask.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] / max(mask.size, 1)


def split_tiles(array: np.ndarray, tiles: tuple[int, int]) -> list[np.ndarray]:
    """A frame (HxW or HxWxC) cut into cols x rows equal tiles, row by row."""
    cols, rows = tiles
    height, width = array.shape[0] // rows, array.shape[1] // cols
    return [array[r * height : (r + 1) * height, c * width : (c + 1) * width] for r in range(rows) for c in range(cols)]


def stitch_tiles(parts: list[np.ndarray], tiles: tuple[int, int]) -> np.ndarray:
    cols, rows = tiles
    return np.concatenate([np.concatenate(parts[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)
