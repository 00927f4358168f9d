"""Dirt masks from Label Studio brush annotations: per-class masks at the image's size (Label Studio RLE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from backend.label_config import SoilingTags
from models.zero_shot.prompts import normalise_label
from training.synthetic import SOILING_CLASSES

CLASS_BY_NAME = {normalise_label(name): index for index, name in enumerate(SOILING_CLASSES)}


class MaskError(ValueError):
    pass


@dataclass
class FrameMask:
    status: str  # "masked", "clean" (all clear), "dirty-without-strokes", "unlabelled"
    mask: np.ndarray | None = None  # uint8 HxW class ids (0 clear .. 3 opaque), when strokes exist
    problems: list[str] = field(default_factory=list)


def rle_to_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio's brush RLE -> boolean HxW; a size mismatch is an error, never a silent reshape."""
    flat = decode_rle(rle)
    if flat.size != width * height * 4:
        raise MaskError(f"brush RLE holds {flat.size // 4} pixels, the image {width}x{height} has {width * height}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def mask_to_rle(mask: np.ndarray) -> list[int]:
    return mask2rle(np.where(mask, 255, 0).astype(np.uint8))


def soiling_class(label: str) -> int | None:
    return CLASS_BY_NAME.get(normalise_label(label))


def frame_mask(result: list[dict], tags: SoilingTags) -> FrameMask:
    """Strokes of all brush classes merged by severity: opaque over semi-transparent over transparent."""
    strokes = [r for r in result if r.get("from_name") == tags.brush and r.get("type") == "brushlabels"]
    choices = [
        c for r in result if r.get("from_name") == tags.soiling for c in (r.get("value") or {}).get("choices", [])
    ]
    if not strokes:
        if tags.dirty_label in choices:
            return FrameMask("dirty-without-strokes")
        return FrameMask("clean") if tags.clean_label in choices else FrameMask("unlabelled")
    problems, painted = [], []
    for stroke in strokes:
        value = stroke.get("value") or {}
        labels = value.get("brushlabels") or []
        classes = [c for c in map(soiling_class, labels) if c]
        if not classes:
            problems.append(f"brush label {labels} is not one of {list(SOILING_CLASSES[1:])}")
            continue
        try:
            region = rle_to_mask(value.get("rle") or [], int(stroke["original_width"]), int(stroke["original_height"]))
        except (MaskError, KeyError, ValueError, TypeError) as exc:
            problems.append(f"stroke {stroke.get('id')}: {exc}")
            continue
        painted.append((max(classes), region))
    if not painted:
        return FrameMask("unreadable", problems=problems)
    shapes = {region.shape for _, region in painted}
    if len(shapes) > 1:
        return FrameMask("unreadable", problems=[*problems, f"strokes of different sizes {sorted(shapes)}"])
    mask = np.zeros(painted[0][1].shape, np.uint8)
    for severity, region in sorted(painted, key=lambda item: item[0]):
        mask[region] = np.maximum(mask[region], severity)
    return FrameMask("masked", mask, problems)


def brush_regions(mask: np.ndarray, tags: SoilingTags) -> list[dict]:
    """One BrushLabels region per soiling class present, at the mask's (the image's) size."""
    height, width = mask.shape
    regions = []
    names = {soiling_class(label): label for label in tags.brush_labels}
    for index in range(1, len(SOILING_CLASSES)):
        if index in names and (mask == index).any():
            regions.append(
                {
                    "id": f"dirt-{index}",
                    "from_name": tags.brush,
                    "to_name": tags.image,
                    "type": "brushlabels",
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {"format": "rle", "rle": mask_to_rle(mask == index), "brushlabels": [names[index]]},
                }
            )
    return regions
