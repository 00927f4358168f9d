"""Turn a frame's verdict into a Label Studio prediction for the project's own tags."""

from __future__ import annotations

import numpy as np

from labelstudio.brush import brush_regions
from labelstudio.label_config import SoilingTags
from models.labels import SOILING_CLASSES
from models.verdict import Verdict
from models.vlm import VlmAnswer

RANDOM_WEIGHTS_NOTE = "MODEL HAS RANDOM WEIGHTS: these numbers are meaningless"


def likely_types(type_scores: dict[str, float], threshold: float) -> list[str]:
    """The best type always, plus any other scoring at least `threshold`, best first."""
    ranked = sorted(type_scores, key=type_scores.__getitem__, reverse=True)
    return [label for i, label in enumerate(ranked) if i == 0 or type_scores[label] >= threshold]


def explanation_text(result: Verdict, types: list[str]) -> str:
    """Says what each number is: P(dirty), the choice's score (P of the chosen label) and the confidence that
    Label Studio shows as the prediction score."""
    verdict = "dirty" if result.is_dirty else "clean"
    p_choice = result.p_dirty if result.is_dirty else 1.0 - result.p_dirty
    choice = "" if result.is_dirty else f", so P(clean)={p_choice:.2f}"
    text = (
        f"{result.source}: lens {verdict}: P(dirty)={result.p_dirty:.2f}{choice} (the choice's score);"
        f" confidence {result.confidence:.2f} (1 = certain, 0 = a coin toss; the prediction score, lowest first"
        " in the lensguard tab)"
    )
    if result.p_classifier is not None:
        text += f"; P(dirty) by the classifier {result.p_classifier:.2f}, by zero-shot {result.p_zero_shot:.2f}"
    if result.p_before_coverage is not None:
        text += (
            f"; the segmenter's dirt coverage was used as evidence: P(dirty) {result.p_before_coverage:.2f} without it,"
            f" {result.p_dirty:.2f} with it"
        )
    if types:
        text += "; likely " + ", ".join(f"{t} ({result.type_scores[t]:.2f})" for t in types) + " (type scores)"
    return text


def note_random_weights(prediction: dict) -> None:
    """Tell annotators, in the text they read, that the predictions come from an untrained model."""
    for region in prediction["result"]:
        if region["type"] == "textarea":
            region["value"]["text"][0] += ". " + RANDOM_WEIGHTS_NOTE


def prediction_for(
    tags: SoilingTags,
    result: Verdict,
    model_version: str,
    type_threshold: float = 0.3,
) -> dict:
    """`score` is the confidence 1 - uncertainty: ascending order puts the most uncertain frames first."""
    label = tags.dirty_label if result.is_dirty else tags.clean_label
    choice_score = result.p_dirty if result.is_dirty else 1.0 - result.p_dirty
    regions: list[dict] = [
        {
            "id": "soiling",
            "from_name": tags.soiling,
            "to_name": tags.image,
            "type": "choices",
            "value": {"choices": [label]},
            "score": round(choice_score, 6),
        }
    ]
    types = likely_types(result.type_scores, type_threshold) if result.is_dirty else []
    if tags.soiling_type and types:
        regions.append(
            {
                "id": "soiling_type",
                "from_name": tags.soiling_type,
                "to_name": tags.image,
                "type": "choices",
                "value": {"choices": types},
                "score": round(result.type_scores[types[0]], 6),
            }
        )
    if tags.explanation:
        regions.append(
            {
                "id": "explanation",
                "from_name": tags.explanation,
                "to_name": tags.image,
                "type": "textarea",
                "value": {"text": [explanation_text(result, types)]},
            }
        )
    return {"result": regions, "score": round(result.confidence, 6), "model_version": model_version}


def add_dirt_mask(
    prediction: dict,
    tags: SoilingTags,
    mask: np.ndarray,
    coverage: np.ndarray,
    tiles: np.ndarray | None = None,
    predrawn: bool = False,
) -> None:
    """BrushLabels regions for each predicted soiling class, the coverage figures in the explanation and, given
    `tiles` (rows x cols x classes), the dirtiest tiles there and every tile's coverage in the meta."""
    prediction["result"].extend(brush_regions(mask, tags))
    covered = ", ".join(
        f"{name} {fraction:.1%}" for name, fraction in zip(SOILING_CLASSES[1:], coverage[1:], strict=True) if fraction
    )
    summary = f"; dirt covers {1 - coverage[0]:.1%} of the frame" + (f" ({covered})" if covered else "")
    if tiles is not None:
        summary += tile_summary(tiles)
        prediction.setdefault("meta", {})["tile_coverage"] = tile_meta(tiles)
    if predrawn:
        summary += "; mask pre-drawn on an uncertain frame"
    for region in prediction["result"]:
        if region["type"] == "textarea":
            region["value"]["text"][0] += summary


def vlm_text(answer: VlmAnswer) -> str:
    """What the VLM said, for the annotator: its verdict and sentence, and where on the frame."""
    if not answer.parsed:
        return f"VLM: answer could not be read ({answer.raw[:80]!r})"
    text = f"VLM: lens {answer.verdict} ({answer.confidence:.2f}): {answer.sentence}"
    if answer.regions:
        text += f" Where: {', '.join(answer.regions)}."
    return text


def add_vlm_answer(prediction: dict, answer: VlmAnswer) -> None:
    """The VLM's explanation leads the TextArea text (the served figures follow it)."""
    for region in prediction["result"]:
        if region["type"] == "textarea":
            region["value"]["text"][0] = f"{vlm_text(answer)} | {region['value']['text'][0]}"


def tile_summary(tiles: np.ndarray, top: int = 3, minimum: float = 0.05) -> str:
    dirt = 1 - tiles[..., 0]
    ranked = [(float(dirt[r, c]), r, c) for r, c in np.ndindex(dirt.shape) if dirt[r, c] >= minimum]
    ranked.sort(reverse=True)
    if not ranked:
        return ""
    rows, cols = dirt.shape
    named = ", ".join(f"row {r + 1} col {c + 1} {share:.0%}" for share, r, c in ranked[:top])
    return f"; dirtiest of {cols}x{rows} tiles: {named}"


def tile_meta(tiles: np.ndarray) -> dict:
    """Per tile (rows of cols), the dirt share and each soiling class's share, rounded to 0.1%."""
    rows, cols = tiles.shape[:2]
    return {
        "grid": [cols, rows],
        "dirt": np.round(1 - tiles[..., 0], 3).tolist(),
        **{name: np.round(tiles[..., i], 3).tolist() for i, name in enumerate(SOILING_CLASSES) if i},
    }
