"""One config for every VLM family, and where it runs (GPU-only by default)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from models.zero_shot.loading import resolve_device

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "blip2")
_MODEL_TYPES = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "blip-2": "blip2"}


@dataclass(frozen=True)
class VlmConfig:
    # A hub name (found in the HF cache, or downloaded where allowed) or a local directory saved by save_pretrained.
    model: str = "Qwen/Qwen2-VL-2B-Instruct"
    family: str = "auto"  # one of FAMILIES, or "auto": from the directory's config.json, else from the name
    device: str = "auto"
    dtype: str = "auto"  # "auto": float16 on a GPU, float32 on CPU; or "float16", "bfloat16", "float32"
    max_new_tokens: int = 96
    retry_unparsed: bool = True  # chat models: ask once more, with a stricter prompt, when an answer does not parse
    batch_size: int = 8
    max_image_pixels: int = 448 * 448  # chat models: frames are resized to at most this many pixels
    allow_random_weights: bool = False
    random_architecture: str = "default"  # what random weights fill: the family's released architecture, or "tiny"
    force_on_cpu: bool = False  # the VLM is off on CPU unless forced: too slow there for anything but tests


def resolve_family(config: VlmConfig) -> str:
    if config.family != "auto":
        if config.family not in FAMILIES:
            raise ValueError(f"unknown VLM family {config.family!r}; use one of {FAMILIES} or auto")
        return config.family
    config_file = Path(config.model).expanduser() / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type", "")
        if model_type in _MODEL_TYPES:
            return _MODEL_TYPES[model_type]
    name = re.sub(r"[^a-z0-9.]", "", config.model.lower())
    for pattern, family in (("qwen2.5vl", "qwen2.5-vl"), ("qwen2vl", "qwen2-vl"), ("blip2", "blip2")):
        if pattern in name:
            return family
    raise ValueError(f"cannot tell the VLM family of {config.model!r}; set the family ({', '.join(FAMILIES)})")


def vlm_availability(config: VlmConfig) -> tuple[bool, str]:
    """Whether the VLM should run here: on a GPU, or on CPU only when forced. The reason is for /health."""
    device = resolve_device(config.device)
    if device.type != "cpu":
        return True, f"VLM on {device}"
    if config.force_on_cpu:
        return True, "VLM forced on CPU: expect seconds per frame"
    return False, "VLM off: no GPU (force it on CPU with LENSGUARD_VLM_FORCE_ON_CPU=true)"


def resolve_dtype(config: VlmConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[config.dtype]
    except KeyError:
        raise ValueError(f"unknown VLM dtype {config.dtype!r}; use auto, float16, bfloat16 or float32") from None
