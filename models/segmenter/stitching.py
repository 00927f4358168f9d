"""Windows over a frame, blended where they overlap, and test-time flips, all on class probabilities."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

Forward = Callable[[torch.Tensor], torch.Tensor]  # NCHW frames -> NCHW class probabilities
FLIP_DIMS = {"h": (3,), "v": (2,)}


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Window offsets covering [0, length): back to back when overlap is 0, else spaced to share `overlap`."""
    if window >= length:
        return [0]
    stride = max(1, round(window * (1 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return [int(v) for v in np.linspace(0, length - window, count).round()]


def blend_weights(height: int, width: int, overlap: float, device: torch.device) -> torch.Tensor:
    """HxW weights that ramp linearly from a window's edges over the overlap: neighbours cross-fade, no seams."""

    def ramp(side: int) -> torch.Tensor:
        margin = overlap * side
        if margin < 1:
            return torch.ones(side, device=device)
        position = torch.arange(side, device=device, dtype=torch.float32) + 0.5
        return (torch.minimum(position, side - position) / margin).clamp(max=1.0)

    return ramp(height)[:, None] * ramp(width)[None, :]


def blended_windows(forward: Forward, x: torch.Tensor, window: tuple[int, int], overlap: float) -> torch.Tensor:
    """Probabilities for whole frames from windows of (width, height), weighted where windows overlap."""
    height, width = x.shape[-2:]
    win_w, win_h = window
    ys, xs = window_starts(height, win_h, overlap), window_starts(width, win_w, overlap)
    if len(ys) == len(xs) == 1:
        return forward(x)
    weight = blend_weights(win_h, win_w, overlap, x.device)
    total = norm = None
    for y0 in ys:
        for x0 in xs:
            part = forward(x[..., y0 : y0 + win_h, x0 : x0 + win_w]) * weight
            if total is None:
                total = x.new_zeros((x.shape[0], part.shape[1], height, width))
                norm = x.new_zeros((height, width))
            total[..., y0 : y0 + win_h, x0 : x0 + win_w] += part
            norm[y0 : y0 + win_h, x0 : x0 + win_w] += weight
    return total / norm


def with_flips(forward: Forward, x: torch.Tensor, flips: Sequence[str]) -> torch.Tensor:
    """Mean of the plain pass and one pass per flip, each flipped back."""
    total = forward(x)
    for flip in flips:
        dims = FLIP_DIMS[flip]
        total = total + forward(x.flip(dims)).flip(dims)
    return total / (1 + len(flips))


def tile_means(probabilities: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """CxHxW per-pixel values -> rows x cols x C means over a cols x rows grid (tiles as even as the size allows)."""
    cols, rows = grid
    _, height, width = probabilities.shape
    ys = np.linspace(0, height, rows + 1).astype(int)
    xs = np.linspace(0, width, cols + 1).astype(int)
    out = np.zeros((rows, cols, probabilities.shape[0]), np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = probabilities[:, ys[r] : ys[r + 1], xs[c] : xs[c + 1]].mean(axis=(1, 2))
    return out
