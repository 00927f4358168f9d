"""What a vision-language model said about one frame, validated: verdict, confidence, types, regions, sentence."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The 3x3 grid the prompt offers; answers are mapped onto these names.
REGION_NAMES = (
    "top-left",
    "top-center",
    "top-right",
    "middle-left",
    "center",
    "middle-right",
    "bottom-left",
    "bottom-center",
    "bottom-right",
)


class VlmVerdict(StrEnum):
    CLEAN = "clean"
    DIRTY = "dirty"
    UNPARSED = "unparsed"  # the model's answer could not be read even after the stricter retry


@dataclass(frozen=True)
class VlmAnswer:
    verdict: VlmVerdict
    confidence: float = 0.0  # in the verdict, 0..1
    soiling_types: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    sentence: str = ""
    raw: str = ""  # the model's last answer text, kept for the report and for debugging prompts
    attempts: int = 1

    @property
    def parsed(self) -> bool:
        return self.verdict != VlmVerdict.UNPARSED

    @property
    def p_dirty(self) -> float | None:
        """The verdict and its confidence as one probability (None when unparsed)."""
        if self.verdict == VlmVerdict.DIRTY:
            return 0.5 + self.confidence / 2
        if self.verdict == VlmVerdict.CLEAN:
            return 0.5 - self.confidence / 2
        return None


def unparsed(raw: str, attempts: int) -> VlmAnswer:
    return VlmAnswer(VlmVerdict.UNPARSED, raw=raw, attempts=attempts)
