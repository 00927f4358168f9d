"""One factory that builds a zero-shot scorer from a config, as open_clip's create_model_and_transforms does."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from models.zero_shot.loading import ClipSpec, load_clip
from models.zero_shot.prompts import load_prompt_set
from models.zero_shot.scorer import ZeroShotScorer


@dataclass(frozen=True)
class ZeroShotConfig(ClipSpec):
    """The image/text model (ClipSpec's fields) plus the prompts it scores with."""

    prompt_set: str = "soiling-v1"
    batch_size: int = 0  # 0: automatic, see auto_batch_size


def create_zero_shot_scorer(config: ZeroShotConfig) -> ZeroShotScorer:
    prompt_set = load_prompt_set(config.prompt_set)  # fail on a bad prompt file before loading weights
    clip = load_clip(config)
    return ZeroShotScorer(clip, prompt_set, batch_size=config.batch_size or auto_batch_size(clip.device))


def auto_batch_size(device: torch.device) -> int:
    """32 frames on CPU (more only adds latency); on a GPU, scaled with its memory (ViT-B at fp16)."""
    if device.type != "cuda":
        return 32
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return 256 if gib >= 40 else 128 if gib >= 16 else 64


@lru_cache(maxsize=4)
def shared_zero_shot_scorer(config: ZeroShotConfig) -> ZeroShotScorer:
    """One scorer per config and process: a long-lived worker loads a model once, not once per job."""
    return create_zero_shot_scorer(config)
