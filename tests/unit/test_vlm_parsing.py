"""The VLM answer parser and BLIP-2's yes/no rule on crafted model outputs (no model involved)."""

from __future__ import annotations

import pytest

from models.vlm import REGION_NAMES, AnswerParseError, VlmVerdict, parse_chat_answer, yes_no_verdict
from models.vlm.prompts import chat_prompt

TYPES = ("Mud", "Water drops", "Dust")
GOOD = (
    '{"verdict": "dirty", "confidence": 0.8, "soiling_types": ["mud", "WATER DROPS"], '
    '"regions": ["top-left", "center"], "explanation": "Brown splashes cover the upper left of the lens."}'
)


def test_a_well_formed_answer_maps_onto_the_projects_labels():
    answer = parse_chat_answer(GOOD, TYPES)
    assert answer.verdict == VlmVerdict.DIRTY
    assert answer.confidence == 0.8
    assert answer.p_dirty == pytest.approx(0.9)
    assert answer.soiling_types == ("Mud", "Water drops")
    assert answer.regions == ("top-left", "center")
    assert answer.sentence == "Brown splashes cover the upper left of the lens."
    assert answer.parsed and answer.attempts == 1


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{GOOD}\n```",
        f"Sure! Here is my answer:\n{GOOD}\nI hope this helps.",
        f"```\n{GOOD}```",
    ],
)
def test_code_fences_and_prose_around_the_object_are_ignored(text):
    assert parse_chat_answer(text, TYPES).soiling_types == ("Mud", "Water drops")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (GOOD[:70], "no complete JSON object"),  # truncated: generation hit max_new_tokens
        ("The lens looks dirty to me.", "no complete JSON object"),
        ("[1, 2, 3]", "no complete JSON object"),
        (GOOD.replace('"dirty"', "1"), "'verdict'"),
        (GOOD.replace('"dirty"', '"maybe"'), "'verdict'"),
        (GOOD.replace("0.8", '"high"'), "'confidence'"),
        (GOOD.replace("0.8", "true"), "'confidence'"),
        (GOOD.replace("0.8", "NaN"), "'confidence'"),
        (GOOD.replace("0.8", "150"), "'confidence'"),
        (GOOD.replace("0.8", "-0.2"), "'confidence'"),
        (GOOD.replace('["mud", "WATER DROPS"]', '"mud"'), "'soiling_types'"),
        (GOOD.replace('["top-left", "center"]', "[1, 2]"), "'regions'"),
        (GOOD.replace('"Brown splashes cover the upper left of the lens."', '""'), "'explanation'"),
        (GOOD.replace(', "explanation": "Brown splashes cover the upper left of the lens."', ""), "'explanation'"),
    ],
)
def test_malformed_answers_raise_a_parse_error_naming_the_problem(text, complaint):
    with pytest.raises(AnswerParseError, match=complaint):
        parse_chat_answer(text, TYPES)


def test_unknown_types_and_regions_are_dropped_not_fatal():
    text = GOOD.replace('["mud", "WATER DROPS"]', '["mud", "bird droppings"]').replace(
        '["top-left", "center"]', '["top", "somewhere", "whole frame"]'
    )
    answer = parse_chat_answer(text, TYPES)
    assert answer.soiling_types == ("Mud",)
    assert answer.regions == ("top-center", *[r for r in REGION_NAMES if r != "top-center"])


def test_a_clean_verdict_carries_no_types_or_regions_and_a_percentage_is_read_as_such():
    answer = parse_chat_answer(GOOD.replace('"dirty"', '"Clean"').replace("0.8", "85"), TYPES)
    assert answer.verdict == VlmVerdict.CLEAN
    assert answer.confidence == pytest.approx(0.85)
    assert answer.p_dirty == pytest.approx(0.075)
    assert answer.soiling_types == () and answer.regions == ()


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("yes", VlmVerdict.DIRTY),
        (" Yes, it is covered in mud", VlmVerdict.DIRTY),
        ("dirty", VlmVerdict.DIRTY),
        ("no", VlmVerdict.CLEAN),
        ("No.", VlmVerdict.CLEAN),
        ("clean", VlmVerdict.CLEAN),
        ("a road at night", VlmVerdict.UNPARSED),
        ("", VlmVerdict.UNPARSED),
        ("!!!", VlmVerdict.UNPARSED),
    ],
)
def test_blip2_answers_map_to_a_verdict_by_their_first_word(reply, verdict):
    assert yes_no_verdict(reply) == verdict


def test_the_prompt_offers_the_projects_types_and_the_grid_and_the_retry_is_stricter():
    prompt = chat_prompt(TYPES)
    assert all(f'"{t}"' in prompt for t in TYPES)
    assert all(f'"{r}"' in prompt for r in REGION_NAMES)
    strict = chat_prompt(TYPES, strict=True)
    assert strict.startswith(prompt) and "could not be read" in strict
