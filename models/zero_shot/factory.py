"""One factory that builds a zero-shot scorer from a config, as open_clip's create_model_and_transforms does."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from models.runtimes.calibration import BATCH_SIZES, calibrated_batch_size
from models.runtimes.fidelity import FidelityFloors, fidelity_frames
from models.runtimes.machine import machine_key
from models.runtimes.selection import OpenedRuntime, open_runtime
from models.zero_shot.loading import ClipSpec, LoadedClip, load_clip
from models.zero_shot.prompts import load_prompt_set
from models.zero_shot.runtime import clip_encoder_source
from models.zero_shot.scorer import ZeroShotScorer


@dataclass(frozen=True)
class ZeroShotConfig(ClipSpec):
    """The image/text model (ClipSpec's fields) plus the prompts it scores with."""

    prompt_set: str = "soiling-v1"
    batch_size: int = 0  # 0: calibrated on this machine when runtime_dir is set, else auto_batch_size
    runtime: str = "auto"  # a name from models.runtimes.list_runtimes(), or "auto" (torch without a runtime_dir)
    runtime_dir: str | Path | None = None  # exported models, fidelity embeddings, calibration and choice records
    runtime_min_cosine: float = 0.995
    runtime_min_agreement: float = 0.99
    calibration_budget_s: float = 60.0

    @property
    def floors(self) -> FidelityFloors:
        return FidelityFloors(self.runtime_min_cosine, self.runtime_min_agreement)


def create_zero_shot_scorer(config: ZeroShotConfig) -> ZeroShotScorer:
    prompt_set = load_prompt_set(config.prompt_set)  # fail on a bad prompt file before loading weights
    clip = load_clip(config)
    reference = ZeroShotScorer(clip, prompt_set)
    source = clip_encoder_source(clip, config.runtime_dir)
    opened = open_runtime(config.runtime, source, config.floors, reference.verdicts)
    batch_size = config.batch_size or choose_batch_size(clip, opened, config)
    return ZeroShotScorer(clip, prompt_set, batch_size, opened)


def choose_batch_size(clip: LoadedClip, opened: OpenedRuntime, config: ZeroShotConfig) -> int:
    """Measured once per machine, runtime and model (recorded in the runtime dir); the fixed default without one."""
    if not config.runtime_dir:
        return auto_batch_size(clip.device)
    sizes = BATCH_SIZES if clip.device.type == "cpu" else (*BATCH_SIZES, 128, 256)
    key = f"{machine_key(clip.device)}|{opened.runtime}|{clip.spec.model_name}|{clip.image_size}"
    frame = fidelity_frames(1, clip.image_size)[0]
    calibration = calibrated_batch_size(
        Path(config.runtime_dir), key, opened.encoder.encode, frame, sizes, config.calibration_budget_s
    )
    return calibration.batch_size


def auto_batch_size(device: torch.device) -> int:
    """Without a calibration: 32 frames on CPU; on a GPU, scaled with its memory (ViT-B at fp16)."""
    if device.type != "cuda":
        return 32
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return 256 if gib >= 40 else 128 if gib >= 16 else 64


@lru_cache(maxsize=4)
def shared_zero_shot_scorer(config: ZeroShotConfig) -> ZeroShotScorer:
    """One scorer per config and process: a long-lived worker loads a model once, not once per job."""
    return create_zero_shot_scorer(config)
