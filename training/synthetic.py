"""Synthetic lens soiling drawn over frames, with exact per-pixel masks (WoodScape classes).

Mask values: 0 clear, 1 transparent (water drops), 2 semi-transparent (smears, dust), 3 opaque (mud).

Two styles: "blobs" (small sharp patches, the original generator) and "realistic", modelled on real lens
contamination of process cameras: large low-frequency haze and film over 20-100% of the frame with soft
boundaries (reduced contrast, veiling glare, a colour cast, blur), condensation (fine droplets fogging a
region) and splashes (a cluster of drops and streaks). Each soiling layer has an exact soft mask, its opacity in
[0, 1]; the class-id mask is derived from them (a pixel belongs to the most severe class whose opacity is at
least 0.5).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.labels import SOILING_CLASSES

SOFT_THRESHOLD = 0.5  # opacity from which a pixel counts as soiled in the class-id mask
STYLES = ("blobs", "realistic")


@dataclass
class SoiledFrame:
    image: Image.Image
    mask: np.ndarray  # uint8 HxW with values in 0..3
    soft: np.ndarray | None = None  # float32 3xHxW opacity per soiling class (transparent, semi, opaque)

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


def low_frequency_field(width: int, height: int, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """HxW float32 in [0, 1]: random values on a coarse grid, upsampled smoothly (no edges, no fine detail)."""
    grid_w = max(2, cells + int(rng.integers(0, 3)))
    grid_h = max(2, round(grid_w * height / width))
    coarse = Image.fromarray((rng.random((grid_h, grid_w)) * 255).astype(np.uint8))
    field = coarse.resize((width, height), Image.Resampling.BICUBIC)
    field = np.asarray(field.filter(ImageFilter.GaussianBlur(max(1, min(width, height) // 12))), np.float32)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def soft_region(
    width: int, height: int, rng: np.random.Generator, coverage: float, softness: float = 0.08
) -> np.ndarray:
    """HxW opacity in [0, 1] that is at least 0.5 on `coverage` of the frame, ramping softly at its boundary.

    A low-frequency field, biased towards one edge or corner of the frame (films grow from the rim of the lens
    housing), is thresholded at its (1 - coverage) quantile through a smooth ramp."""
    field = low_frequency_field(width, height, rng)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    edge = (np.cos(angle) * (x / width - 0.5) + np.sin(angle) * (y / height - 0.5)) + 0.5
    field = 0.6 * field + 0.4 * edge + rng.normal(0, 1e-4, field.shape).astype(np.float32)  # break ties
    if coverage >= 1:
        return np.clip(0.75 + 0.25 * (field - field.min()) / max(float(np.ptp(field)), 1e-6), 0, 1)
    level = np.quantile(field, 1 - coverage)
    return (1 / (1 + np.exp(-(field - level) / (softness * max(float(field.std()), 1e-6))))).astype(np.float32)


def _blend(frame: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return frame * (1 - alpha[..., None]) + layer * alpha[..., None]


def _blurred(frame: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray(frame.clip(0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32)


def draw_haze(frame: np.ndarray, rng: np.random.Generator, coverage: float) -> tuple[np.ndarray, np.ndarray, str]:
    """A haze or film: blur, lost contrast, a veiling glare and a colour cast under a soft region.
    Returns (frame, opacity, class): thin haze is semi-transparent, a thick film opaque."""
    height, width = frame.shape[:2]
    alpha = soft_region(width, height, rng, coverage)
    thick = rng.random() < 0.3
    cast = np.array(rng.uniform([150, 150, 140], [235, 230, 225]), np.float32)  # grey-white, warm or cool
    blurred = _blurred(frame, max(2.0, width / rng.uniform(40, 120)))
    mean = blurred.mean(axis=(0, 1), keepdims=True)
    flat = mean + (blurred - mean) * rng.uniform(0.05, 0.4)  # contrast loss
    strength = rng.uniform(0.75, 0.95) if thick else rng.uniform(0.45, 0.75)
    veil = (1 - strength) * flat + strength * cast
    glare = low_frequency_field(width, height, rng, cells=2)[..., None] * rng.uniform(10, 45)  # veiling glare
    layer = veil + glare
    return _blend(frame, layer, alpha), alpha, "opaque" if thick else "semi-transparent"


def draw_condensation(frame: np.ndarray, rng: np.random.Generator, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Fine droplets fogging a soft region: blur, brightening and a speckle of tiny bright drops."""
    height, width = frame.shape[:2]
    alpha = soft_region(width, height, rng, coverage, softness=0.15)
    speckle = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(speckle)
    for _ in range(int(width * height / 400)):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.5, 2.5)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.uniform(120, 255)))
    dots = np.asarray(speckle.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] / 255
    layer = 0.6 * _blurred(frame, max(2.0, width / 60)) + 0.4 * 210 + dots * 40
    return _blend(frame, layer, alpha), alpha


def draw_splash(frame: np.ndarray, rng: np.random.Generator, muddy: bool) -> tuple[np.ndarray, np.ndarray]:
    """A splash: drops and streaks radiating from a point; water refracts and blurs, mud is dark and opaque."""
    height, width = frame.shape[:2]
    shapes = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(shapes)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    size = min(width, height)
    for _ in range(int(rng.integers(15, 45))):
        angle, distance = rng.uniform(0, 2 * np.pi), abs(rng.normal(0, 0.25)) * size
        x, y = cx + distance * np.cos(angle), cy + distance * np.sin(angle)
        r = rng.uniform(0.01, 0.05) * size
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        if rng.random() < 0.4:  # a streak running outwards
            length = rng.uniform(1, 4) * r
            draw.line([x, y, x + length * np.cos(angle), y + length * np.sin(angle)], fill=255, width=max(1, int(r)))
    alpha = np.asarray(shapes.filter(ImageFilter.GaussianBlur(max(1.0, size / 200))), np.float32) / 255
    if muddy:
        layer = np.array(rng.uniform([50, 35, 20], [110, 85, 60]), np.float32) + rng.normal(0, 8, frame.shape)
    else:
        layer = 0.75 * _blurred(frame, max(2.0, size / 50))[::-1, ::-1] + 0.25 * frame + 15
    return _blend(frame, layer, alpha), alpha


def add_realistic_soiling(image: Image.Image, rng: np.random.Generator) -> SoiledFrame:
    """One to three layers: mostly haze or film over 20-100% of the frame, sometimes condensation or a splash."""
    frame = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    height, width = frame.shape[:2]
    soft = np.zeros((3, height, width), np.float32)
    for layer in range(int(rng.choice([1, 1, 2, 3]))):
        pick = rng.random()
        if pick < 0.6 or (layer == 0 and pick < 0.75):
            coverage = 1.0 if rng.random() < 0.25 else float(rng.uniform(0.2, 1.0))
            frame, alpha, kind = draw_haze(frame, rng, coverage)
        elif pick < 0.8:
            frame, alpha = draw_condensation(frame, rng, float(rng.uniform(0.2, 0.8)))
            kind = "transparent"
        else:
            muddy = rng.random() < 0.5
            frame, alpha = draw_splash(frame, rng, muddy)
            kind = "opaque" if muddy else "transparent"
        index = SOILING_CLASSES.index(kind) - 1
        soft[index] = np.maximum(soft[index], alpha)
    return SoiledFrame(Image.fromarray(frame.clip(0, 255).astype(np.uint8)), class_mask(soft), soft)


def class_mask(soft: np.ndarray) -> np.ndarray:
    """3xHxW opacities -> HxW class ids: the most severe class whose opacity reaches SOFT_THRESHOLD."""
    mask = np.zeros(soft.shape[1:], np.uint8)
    for index in range(3):  # transparent, semi-transparent, opaque: later ones win
        mask[soft[index] >= SOFT_THRESHOLD] = index + 1
    return mask


def make_frames(
    count: int,
    width: int = 320,
    height: int = 240,
    dirty_fraction: float = 0.5,
    seed: int = 0,
    style: str = "blobs",
    backgrounds: Sequence[Image.Image] = (),
) -> list[SoiledFrame]:
    """`count` frames, the first round(count * dirty_fraction) of them soiled in the given style; over
    `backgrounds` (clean frames, resized, taken in turn) where given, else over generated scenes."""
    if style not in STYLES:
        raise ValueError(f"unknown soiling style {style!r}; known: {', '.join(STYLES)}")
    rng = np.random.default_rng(seed)
    n_dirty = round(count * dirty_fraction)
    frames = []
    for i in range(count):
        if backgrounds:
            scene = backgrounds[i % len(backgrounds)].convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        else:
            scene = synthetic_scene(width, height, rng)
        if i >= n_dirty:
            frames.append(SoiledFrame(scene, np.zeros((height, width), np.uint8)))
        elif style == "realistic":
            frames.append(add_realistic_soiling(scene, rng))
        else:
            frames.append(add_soiling(scene, rng))
    return frames


def write_dataset(
    out: Path, count: int, width: int, height: int, dirty_fraction: float, seed: int, style: str = "blobs"
) -> Path:
    """Frames (JPEG), exact class masks (PNG, values 0-3) and a manifest like the real dev set's."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "label", "dirt_fraction", "group"])
        for i, frame in enumerate(make_frames(count, width, height, dirty_fraction, seed, style)):
            image, mask = f"images/synthetic_{i:05d}.jpg", f"masks/synthetic_{i:05d}.png"
            (out / image).write_bytes(frame.jpeg())
            Image.fromarray(frame.mask).save(out / mask)
            label = "dirty" if frame.is_dirty else "clean"
            writer.writerow([image, mask, label, f"{(frame.mask > 0).mean():.4f}", f"synthetic-{i}"])
    return manifest
