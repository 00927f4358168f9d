"""One factory from a config, as open_clip's create_model_and_transforms; one model per config and process."""

from __future__ import annotations

import logging
from functools import lru_cache

from models.vlm.base import VlmExplainer
from models.vlm.blip2 import Blip2Explainer
from models.vlm.config import VlmConfig, vlm_availability
from models.vlm.loading import load_vlm
from models.vlm.qwen_vl import QwenVlExplainer
from models.zero_shot.loading import WeightsUnavailableError

log = logging.getLogger(__name__)
EXPLAINERS: dict[str, type[VlmExplainer]] = {
    "qwen2-vl": QwenVlExplainer,
    "qwen2.5-vl": QwenVlExplainer,
    "blip2": Blip2Explainer,
}


def create_vlm_explainer(config: VlmConfig) -> VlmExplainer:
    loaded = load_vlm(config)
    return EXPLAINERS[loaded.family](loaded, config)


@lru_cache(maxsize=2)
def shared_vlm_explainer(config: VlmConfig) -> VlmExplainer:
    """Loaded once per process and config: every request and job of a worker shares it."""
    return create_vlm_explainer(config)


def serving_vlm(config: VlmConfig) -> tuple[VlmExplainer | None, str]:
    """The shared explainer, or None and why (off on CPU, weights missing): the reason is a /health warning."""
    enabled, reason = vlm_availability(config)
    if not enabled:
        return None, reason
    try:
        explainer = shared_vlm_explainer(config)
    except (WeightsUnavailableError, ValueError) as exc:
        log.warning("VLM off: %s", exc)
        return None, f"VLM off: {exc}"
    return explainer, f"{reason}: {explainer.version}"
