"""Frames as arrays: image bytes decoded and squashed to a model's size, and masks resized to match."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    pass


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes, read from the header only."""
    try:
        return Image.open(io.BytesIO(data)).size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image ({exc})") from exc


def decode_image(data: bytes, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """Bytes -> uint8 HxWx3 at `size`, the whole frame squashed (a centre crop would cut dirt at the edges)."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageDecodeError(f"image is {width}x{height}, over the limit of {max_pixels} pixels")
        image.draft("RGB", size)  # JPEG: decode at reduced scale, several times faster
        return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a readable image ({exc})") from exc


def resize_frame(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded uint8 frame squashed to (width, height), bicubic."""
    return np.asarray(Image.fromarray(pixels).resize(tuple(size), Image.Resampling.BICUBIC))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class-id mask resized to (width, height) without inventing classes (nearest neighbour)."""
    return np.asarray(Image.fromarray(mask).resize(tuple(size), Image.Resampling.NEAREST))
