"""Synthetic lens soiling drawn over frames, with exact per-pixel masks (WoodScape classes).

Mask values: 0 clear, 1 transparent (water drops), 2 semi-transparent (smears, dust), 3 opaque (mud).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.labels import SOILING_CLASSES


@dataclass
class SoiledFrame:
    image: Image.Image
    mask: np.ndarray  # uint8 HxW with values in 0..3

    @property
    def is_dirty(self) -> bool:
        return bool(self.mask.any())

    def jpeg(self, quality: int = 90) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()


def synthetic_scene(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A plausible camera frame: sky-to-ground gradient, structures, texture and sensor noise."""
    y = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.uniform(90, 220, 3), rng.uniform(20, 140, 3)
    base = (top * (1 - y) + bottom * y) * np.ones((1, width, 1))
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(6, 16)):
        x0, y0 = rng.uniform(0, width), rng.uniform(height * 0.2, height)
        w, h = rng.uniform(0.03, 0.3) * width, rng.uniform(0.05, 0.5) * height
        color = tuple(int(c) for c in rng.uniform(30, 230, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0 - h, x0 + w, y0], fill=color)
        else:
            draw.line([x0, y0, x0 + w, y0 - h], fill=color, width=int(rng.uniform(2, 12)))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _blob_mask(width: int, height: int, rng: np.random.Generator, scale: float) -> Image.Image:
    """An irregular blob: a jittered polygon around a random centre, blurred and thresholded."""
    mask = Image.new("L", (width, height), 0)
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    radius = scale * min(width, height) * rng.uniform(0.5, 1.5)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = radius * rng.uniform(0.5, 1.2, len(angles))
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]
    ImageDraw.Draw(mask).polygon(points, fill=255)
    blurred = mask.filter(ImageFilter.GaussianBlur(radius * 0.15 + 1))
    return blurred.point(lambda v: 255 if v > 127 else 0)


def _paint(frame: np.ndarray, region: np.ndarray, layer: np.ndarray, alpha: float) -> None:
    frame[region] = (1 - alpha) * frame[region] + alpha * layer[region]


def add_soiling(
    image: Image.Image,
    rng: np.random.Generator,
    kinds: tuple[str, ...] = ("opaque", "semi-transparent", "transparent"),
    count: int | None = None,
    scale: float = 0.2,
) -> SoiledFrame:
    """Draw `count` soiling patches of the given WoodScape classes; later, more severe classes win overlaps."""
    frame = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    height, width = frame.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    blurred = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(max(2, width // 150))), np.float32)
    count = int(rng.integers(1, 5)) if count is None else count
    patches = sorted(rng.choice(kinds, size=count), key=SOILING_CLASSES.index)
    for kind in patches:
        region = np.asarray(_blob_mask(width, height, rng, scale)) > 0
        if kind == "opaque":  # mud: dark brown, textured, fully blocking
            mud = np.array(rng.uniform([40, 25, 10], [95, 70, 45]), np.float32)
            texture = rng.normal(0, 10, (height, width, 1))
            _paint(frame, region, mud + texture, 1.0)
        elif kind == "semi-transparent":  # smear or dust: a hazy, brownish-grey veil over a blurred scene
            veil = 0.5 * blurred + 0.5 * np.array(rng.uniform(110, 180, 3), np.float32)
            _paint(frame, region, veil, float(rng.uniform(0.55, 0.8)))
        else:  # water drop: refraction (flipped, magnified neighbourhood) and blur inside a bright rim
            ys, xs = np.nonzero(region)
            cy, cx = ys.mean(), xs.mean()
            src_y = np.clip((2 * cy - ys) * 0.5 + cy * 0.5, 0, height - 1).astype(int)
            src_x = np.clip((2 * cx - xs) * 0.5 + cx * 0.5, 0, width - 1).astype(int)
            frame[ys, xs] = 0.7 * blurred[src_y, src_x] + 0.3 * frame[ys, xs] + 12
        mask[region] = np.maximum(mask[region], SOILING_CLASSES.index(kind))
    return SoiledFrame(Image.fromarray(frame.clip(0, 255).astype(np.uint8)), mask)


def make_frames(
    count: int, width: int = 320, height: int = 240, dirty_fraction: float = 0.5, seed: int = 0
) -> list[SoiledFrame]:
    """`count` frames, the first round(count * dirty_fraction) of them soiled."""
    rng = np.random.default_rng(seed)
    n_dirty = round(count * dirty_fraction)
    frames = []
    for i in range(count):
        scene = synthetic_scene(width, height, rng)
        if i < n_dirty:
            frames.append(add_soiling(scene, rng))
        else:
            frames.append(SoiledFrame(scene, np.zeros((height, width), np.uint8)))
    return frames


def write_dataset(out: Path, count: int, width: int, height: int, dirty_fraction: float, seed: int) -> Path:
    """Frames (JPEG), exact class masks (PNG, values 0-3) and a manifest like the real dev set's."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "label", "dirt_fraction", "group"])
        for i, frame in enumerate(make_frames(count, width, height, dirty_fraction, seed)):
            image, mask = f"images/synthetic_{i:05d}.jpg", f"masks/synthetic_{i:05d}.png"
            (out / image).write_bytes(frame.jpeg())
            Image.fromarray(frame.mask).save(out / mask)
            label = "dirty" if frame.is_dirty else "clean"
            writer.writerow([image, mask, label, f"{(frame.mask > 0).mean():.4f}", f"synthetic-{i}"])
    return manifest
