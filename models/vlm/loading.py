"""Load a VLM and its processor from a hub name, a local directory or the HF cache; random only where allowed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    Blip2ForConditionalGeneration,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)
from transformers.utils import logging as transformers_logging

from models.vlm.config import VlmConfig, resolve_dtype, resolve_family
from models.vlm.random_init import build_random_vlm
from models.zero_shot.loading import WeightsUnavailableError, resolve_device

log = logging.getLogger(__name__)
MODEL_CLASSES = {
    "qwen2-vl": Qwen2VLForConditionalGeneration,
    "qwen2.5-vl": Qwen2_5_VLForConditionalGeneration,
    "blip2": Blip2ForConditionalGeneration,
}
transformers_logging.disable_progress_bar()


@dataclass
class LoadedVlm:
    model: torch.nn.Module
    processor: object
    family: str
    weights: str  # "dir:<name>", "hub:<name>" (hub or HF cache), or "random"
    device: torch.device
    dtype: torch.dtype
    warnings: list[str] = field(default_factory=list)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def load_vlm(config: VlmConfig) -> LoadedVlm:
    """The model the config names, in half precision on a GPU; a missing model is one clear error or, where
    allowed, the family's released architecture with random weights (and a warning)."""
    warnings: list[str] = []
    if _looks_like_path(config.model):
        path = Path(config.model).expanduser()
        if not (path / "config.json").is_file():
            raise WeightsUnavailableError(
                f"VLM directory {path} has no config.json (save one with save_pretrained); check LENSGUARD_VLM_MODEL"
            )
        source, weights, local_only = str(path), f"dir:{path.name}", True
    else:
        source, weights, local_only = config.model, f"hub:{config.model}", False
    family = resolve_family(config)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config, device)
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        model = MODEL_CLASSES[family].from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except Exception as exc:
        if local_only or not config.allow_random_weights:
            raise WeightsUnavailableError(
                f"could not load VLM {config.model!r} ({_first_line(exc)}). Put it in the Hugging Face cache "
                "(HF_HOME), point LENSGUARD_VLM_MODEL at a local directory, or set "
                "LENSGUARD_VLM_ALLOW_RANDOM_WEIGHTS=true for tests and demos."
            ) from exc
        message = f"VLM {config.model!r} unavailable ({_first_line(exc)}); using RANDOM weights of its architecture"
        log.warning(message)
        warnings.append(message)
        model, processor = build_random_vlm(family, config.random_architecture, max_pixels=config.max_image_pixels)
        weights = "random"
    model = model.to(device=device, dtype=dtype).eval()
    processor.tokenizer.padding_side = "left"  # batched generation continues every prompt from its last token
    return LoadedVlm(model, processor, family, weights, device, dtype, warnings)
