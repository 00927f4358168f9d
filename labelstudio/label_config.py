"""Find lensguard's tags in whatever labeling config a project uses; never rely on fixed tag names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from label_studio_sdk.label_interface import LabelInterface

from models.labels import normalise_label

CLEAN_WORDS = {"clean", "clear", "ok", "normal", "no soiling", "not soiled", "not dirty", "clean lens"}
DIRTY_WORDS = {"dirty", "soiled", "soiling", "contaminated", "obstructed", "blocked", "dirty lens", "not clean"}
PREFERRED_BINARY_NAMES = ("soiling",)
PREFERRED_TYPE_NAMES = ("soiling_type",)


class LabelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SoilingTags:
    image: str
    image_key: str
    soiling: str
    clean_label: str
    dirty_label: str
    soiling_type: str | None = None
    type_labels: tuple[str, ...] = ()
    brush: str | None = None
    brush_labels: tuple[str, ...] = ()
    explanation: str | None = None


def _binary_labels(labels: list[str]) -> tuple[str, str] | None:
    clean = [label for label in labels if normalise_label(label) in CLEAN_WORDS]
    dirty = [label for label in labels if normalise_label(label) in DIRTY_WORDS]
    if len(clean) == 1 and len(dirty) == 1:
        return clean[0], dirty[0]
    return None


def _controls_on(interface: LabelInterface, tag: str, image: str) -> list:
    return [c for c in interface.controls if c.tag == tag and image in (c.to_name or [])]


def _prefer(controls: list, names: tuple[str, ...]) -> list:
    return sorted(controls, key=lambda c: c.name not in names)


@lru_cache(maxsize=64)
def parse_soiling_config(config: str) -> SoilingTags:
    """The Image plus the clean/dirty Choices, and optional type Choices, BrushLabels and TextArea."""
    if not config or not config.strip():
        raise LabelConfigError("the labeling config is empty")
    try:
        interface = LabelInterface(config)
    except Exception as exc:
        raise LabelConfigError(f"the labeling config is not valid Label Studio XML: {exc}") from exc
    images = [o for o in interface.objects if o.tag == "Image"]
    for image in images:
        choices = _prefer(_controls_on(interface, "Choices", image.name), PREFERRED_BINARY_NAMES)
        binary = next(((c, labels) for c in choices if (labels := _binary_labels(list(c.labels or [])))), None)
        if binary is None:
            continue
        control, (clean_label, dirty_label) = binary
        others = _prefer([c for c in choices if c.name != control.name and c.labels], PREFERRED_TYPE_NAMES)
        brushes = _controls_on(interface, "BrushLabels", image.name)
        texts = _controls_on(interface, "TextArea", image.name)
        return SoilingTags(
            image=image.name,
            image_key=str(image.value).lstrip("$"),
            soiling=control.name,
            clean_label=clean_label,
            dirty_label=dirty_label,
            soiling_type=others[0].name if others else None,
            type_labels=tuple(others[0].labels) if others else (),
            brush=brushes[0].name if brushes else None,
            brush_labels=tuple(brushes[0].labels or ()) if brushes else (),
            explanation=texts[0].name if texts else None,
        )
    if not images:
        raise LabelConfigError("the labeling config has no <Image> tag; lensguard labels camera frames")
    raise LabelConfigError(
        "the labeling config has no <Choices> with one clean and one dirty option attached to an <Image> "
        f"(clean words: {sorted(CLEAN_WORDS)}; dirty words: {sorted(DIRTY_WORDS)}); "
        "see labeling_config/soiling.xml"
    )
