"""Read a model's answer text into a VlmAnswer, strictly: anything that does not validate is an AnswerParseError."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from models.vlm.answer import REGION_NAMES, VlmAnswer, VlmVerdict

MAX_SENTENCE_CHARS = 400
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
_VERDICTS = {"clean": VlmVerdict.CLEAN, "dirty": VlmVerdict.DIRTY}
_REGION_ALIASES = {
    "top": "top-center",
    "upper": "top-center",
    "bottom": "bottom-center",
    "lower": "bottom-center",
    "left": "middle-left",
    "right": "middle-right",
    "middle": "center",
    "centre": "center",
    "middle-center": "center",
    "center-center": "center",
}
_WHOLE_FRAME = {"all", "whole", "whole frame", "entire frame", "everywhere", "full frame"}
# BLIP-2 answers a yes/no question; the fixed rule maps its first word to a verdict.
YES_WORDS = ("yes", "dirty", "soiled", "yeah")
NO_WORDS = ("no", "clean", "not", "nope")


class AnswerParseError(ValueError):
    pass


def extract_json_object(text: str) -> dict:
    """The first complete JSON object in the text, ignoring code fences and prose around it."""
    cleaned = _FENCE.sub("", text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise AnswerParseError("no complete JSON object in the answer")


def _norm(word: str) -> str:
    return re.sub(r"[\s_]+", " ", word.strip().lower())


def _string_list(data: dict, key: str) -> list[str]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AnswerParseError(f"'{key}' must be a list of strings, got {type(value).__name__}")
    return value


def _confidence(data: dict) -> float:
    value = data.get("confidence")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnswerParseError(f"'confidence' must be a number between 0 and 1, got {value!r}")
    if 1 < value <= 100:  # a percentage
        value = value / 100
    if not 0 <= value <= 1:
        raise AnswerParseError(f"'confidence' must be between 0 and 1, got {value!r}")
    return float(value)


def normalise_region(name: str) -> list[str]:
    """A region name from an answer as grid names: aliases like "top" map to one cell, "whole frame" to all nine."""
    key = _norm(name).replace(" ", "-")
    if key.replace("-", " ") in _WHOLE_FRAME:
        return list(REGION_NAMES)
    key = _REGION_ALIASES.get(key, key)
    return [key] if key in REGION_NAMES else []


def match_types(names: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """Names mapped onto the project's own labels (case and spacing ignored); unknown names are dropped."""
    by_norm = {_norm(label): label for label in allowed}
    found = [by_norm[_norm(name)] for name in names if _norm(name) in by_norm]
    return list(dict.fromkeys(found))


def parse_chat_answer(text: str, soiling_types: Sequence[str], attempts: int = 1) -> VlmAnswer:
    """Expects {"verdict": "clean"|"dirty", "confidence": 0..1, "soiling_types": [...], "regions": [...],
    "explanation": "..."}; unknown types and regions are dropped, anything else that does not fit raises."""
    data = extract_json_object(text)
    verdict_value = data.get("verdict")
    if not isinstance(verdict_value, str) or _norm(verdict_value) not in _VERDICTS:
        raise AnswerParseError(f'\'verdict\' must be "clean" or "dirty", got {verdict_value!r}')
    verdict = _VERDICTS[_norm(verdict_value)]
    sentence = data.get("explanation")
    if not isinstance(sentence, str) or not sentence.strip():
        raise AnswerParseError("'explanation' must be a non-empty string")
    types = match_types(_string_list(data, "soiling_types"), soiling_types)
    regions = [cell for name in _string_list(data, "regions") for cell in normalise_region(name)]
    dirty = verdict == VlmVerdict.DIRTY
    return VlmAnswer(
        verdict=verdict,
        confidence=_confidence(data),
        soiling_types=tuple(types) if dirty else (),
        regions=tuple(dict.fromkeys(regions)) if dirty else (),
        sentence=" ".join(sentence.split())[:MAX_SENTENCE_CHARS],
        raw=text,
        attempts=attempts,
    )


def yes_no_verdict(answer: str) -> VlmVerdict:
    """The fixed BLIP-2 rule: the answer's first word, yes-like -> dirty, no-like -> clean, else unparsed."""
    words = re.findall(r"[a-z]+", answer.lower())
    if not words:
        return VlmVerdict.UNPARSED
    if words[0] in YES_WORDS:
        return VlmVerdict.DIRTY
    if words[0] in NO_WORDS:
        return VlmVerdict.CLEAN
    return VlmVerdict.UNPARSED
