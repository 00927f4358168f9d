"""Label Studio brush regions: RLE <-> masks, and BrushLabels regions for predicted soiling masks."""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from labelstudio.label_config import SoilingTags
from models.labels import SOILING_CLASSES, soiling_class


class MaskError(ValueError):
    pass


def rle_to_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio's brush RLE -> boolean HxW; a size mismatch is an error, never a silent reshape."""
    flat = decode_rle(rle)
    if flat.size != width * height * 4:
        raise MaskError(f"brush RLE holds {flat.size // 4} pixels, the image {width}x{height} has {width * height}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def mask_to_rle(mask: np.ndarray) -> list[int]:
    return mask2rle(np.where(mask, 255, 0).astype(np.uint8))


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
