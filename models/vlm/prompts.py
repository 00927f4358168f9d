"""The chat prompt that asks for a JSON answer, and its stricter retry version."""

from __future__ import annotations

from collections.abc import Sequence

from models.vlm.answer import REGION_NAMES

BLIP2_QUESTION = "Question: is the camera lens dirty? Answer:"
BLIP2_CAPTION_PROMPT = ""  # an empty prompt makes BLIP-2 caption the frame


def chat_prompt(soiling_types: Sequence[str], strict: bool = False) -> str:
    types = ", ".join(f'"{t}"' for t in soiling_types) or "none"
    regions = ", ".join(f'"{r}"' for r in REGION_NAMES)
    text = (
        "This is a frame from a camera. Is the camera lens itself dirty or soiled (mud, water drops, dust, snow, "
        "condensation, smears on the lens)? Fog, rain or glare in the scene and a dirty windshield in front of "
        "the lens do not make the lens dirty.\n"
        "Answer with one JSON object and nothing else:\n"
        '{"verdict": "clean" or "dirty", "confidence": a number from 0 to 1, '
        f'"soiling_types": a list chosen from [{types}], "regions": a list chosen from [{regions}], '
        '"explanation": one sentence}'
    )
    if strict:
        text += (
            "\nYour previous answer could not be read. Reply with the JSON object only: no code fences, no text "
            'before or after it, double quotes, "confidence" as a number, lists even for one item.'
        )
    return text
