"""Zero-shot soiling detection with open_clip (CLIP and SigLIP)."""

from models.zero_shot.factory import ZeroShotConfig, create_zero_shot_scorer, shared_zero_shot_scorer
from models.zero_shot.loading import ClipSpec, LoadedClip, WeightsUnavailableError, load_clip
from models.zero_shot.prompts import PromptSet, PromptSetError, load_prompt_set
from models.zero_shot.scorer import ZeroShotResult, ZeroShotScorer, binary_uncertainty

__all__ = [
    "ClipSpec",
    "LoadedClip",
    "PromptSet",
    "PromptSetError",
    "WeightsUnavailableError",
    "ZeroShotConfig",
    "ZeroShotResult",
    "ZeroShotScorer",
    "binary_uncertainty",
    "create_zero_shot_scorer",
    "load_clip",
    "load_prompt_set",
    "shared_zero_shot_scorer",
]
