"""Dirt masks from Label Studio brush annotations: per-class masks at the image's size (Label Studio RLE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labelstudio.brush import MaskError, rle_to_mask
from labelstudio.label_config import SoilingTags
from models.labels import SOILING_CLASSES, soiling_class


@dataclass
class FrameMask:
    status: str  # "masked", "clean" (all clear), "dirty-without-strokes", "unlabelled"
    mask: np.ndarray | None = None  # uint8 HxW class ids (0 clear .. 3 opaque), when strokes exist
    problems: list[str] = field(default_factory=list)


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
