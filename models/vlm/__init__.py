"""Generative vision-language models (Qwen2-VL, Qwen2.5-VL, BLIP-2) that explain and settle doubtful frames."""

from models.vlm.answer import REGION_NAMES, VlmAnswer, VlmVerdict
from models.vlm.base import VlmExplainer
from models.vlm.config import FAMILIES, VlmConfig, vlm_availability
from models.vlm.factory import create_vlm_explainer, serving_vlm, shared_vlm_explainer
from models.vlm.loading import LoadedVlm, load_vlm
from models.vlm.parsing import AnswerParseError, parse_chat_answer, yes_no_verdict
from models.vlm.random_init import build_random_vlm

__all__ = [
    "FAMILIES",
    "REGION_NAMES",
    "AnswerParseError",
    "LoadedVlm",
    "VlmAnswer",
    "VlmConfig",
    "VlmExplainer",
    "VlmVerdict",
    "build_random_vlm",
    "create_vlm_explainer",
    "load_vlm",
    "parse_chat_answer",
    "serving_vlm",
    "shared_vlm_explainer",
    "vlm_availability",
    "yes_no_verdict",
]
