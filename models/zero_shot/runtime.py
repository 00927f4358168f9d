"""The CLIP/SigLIP image tower as a runtime source: exported, checked and batch-calibrated like any tower."""

from __future__ import annotations

from pathlib import Path

from models.runtimes.factory import EncoderSource
from models.runtimes.tower import PixelTower
from models.zero_shot.loading import LoadedClip


def clip_tower(clip: LoadedClip) -> PixelTower:
    """open_clip's encode_image(normalize=True), with the model's pixel normalisation in front."""
    return PixelTower(clip.model.visual, clip.mean, clip.std).eval()


def clip_encoder_source(clip: LoadedClip, cache_root: str | Path | None) -> EncoderSource:
    name = clip.spec.model_name.removeprefix("hf-hub:")
    return EncoderSource(clip_tower(clip), name, clip.image_size, clip.device, Path(cache_root) if cache_root else None)
