"""The VLM cascade as pure logic: which frames the VLM sees (served uncertainty inside a band, capped per batch
and per hour) and how its answer combines with the served verdict. The rule's version goes into model_version."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from models.verdict import Verdict, binary_uncertainty, combined_uncertainty
from models.vlm.answer import VlmAnswer, VlmVerdict

CASCADE_VERSION = 1  # bump when a rule's arithmetic changes
HOUR = 3600.0


class VlmRule(StrEnum):
    OVERRIDE = "override"  # inside the band the VLM's verdict replaces the served one
    AVERAGE = "average"  # mean of the served P(dirty) and the VLM's; disagreement widens the uncertainty
    VOTE = "vote"  # majority of zero-shot, classifier (when active) and VLM; the VLM breaks ties


@dataclass(frozen=True)
class CascadeConfig:
    band: tuple[float, float] = (0.5, 1.0)  # served uncertainty (1 - |2p - 1|), both ends included
    rule: VlmRule = VlmRule.OVERRIDE
    max_per_batch: int = 8
    max_per_hour: int = 600

    def __post_init__(self):
        low, high = self.band
        if not 0 <= low <= high <= 1:
            raise ValueError(f"the VLM band must satisfy 0 <= low <= high <= 1, got {self.band}")
        if self.max_per_batch < 0 or self.max_per_hour < 0:
            raise ValueError("the VLM caps must not be negative")
        object.__setattr__(self, "rule", VlmRule(self.rule))

    @property
    def version(self) -> str:
        """e.g. `cascade1-override-u0.50-1.00`; model_version appends it with the VLM's own version."""
        low, high = self.band
        return f"cascade{CASCADE_VERSION}-{self.rule}-u{low:.2f}-{high:.2f}"

    def in_band(self, uncertainty: float) -> bool:
        return self.band[0] <= uncertainty <= self.band[1]


class HourlyBudget:
    """Frames granted over a sliding hour, in this process."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.per_hour = per_hour
        self.clock = clock
        self._granted: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self._lock:
            now = self.clock()
            while self._granted and now - self._granted[0] >= HOUR:
                self._granted.popleft()
            granted = max(0, min(wanted, self.per_hour - len(self._granted)))
            self._granted.extend([now] * granted)
            return granted


class CascadePolicy:
    def __init__(self, config: CascadeConfig, budget: HourlyBudget | None = None):
        self.config = config
        self.budget = budget or HourlyBudget(config.max_per_hour)

    def select(self, uncertainties: Sequence[float | None]) -> list[int]:
        """Indices (in order) of the frames to send: inside the band, the most uncertain first up to the caps."""
        candidates = [i for i, u in enumerate(uncertainties) if u is not None and self.config.in_band(u)]
        candidates.sort(key=lambda i: -uncertainties[i])
        candidates = candidates[: self.config.max_per_batch]
        return sorted(candidates[: self.budget.take(len(candidates))])


def _vote(verdict: Verdict, answer: VlmAnswer, p_vlm: float) -> tuple[float, float]:
    served = [p for p in (verdict.p_zero_shot, verdict.p_classifier) if p is not None] or [verdict.p_dirty]
    voters = [*served, p_vlm]
    dirty_votes = sum(p >= 0.5 for p in voters)
    tie = 2 * dirty_votes == len(voters)
    dirty = answer.verdict == VlmVerdict.DIRTY if tie else 2 * dirty_votes > len(voters)
    side = [p for p in voters if (p >= 0.5) == dirty]
    p_dirty = float(np.mean(side))
    return p_dirty, float(1 - abs(2 * p_dirty - 1) * len(side) / len(voters))


def combine_with_vlm(verdict: Verdict, answer: VlmAnswer, rule: VlmRule) -> Verdict:
    """The served verdict with the VLM's answer folded in; an unparsed answer leaves it as it was."""
    p_vlm = answer.p_dirty
    if p_vlm is None:
        return verdict
    if rule == VlmRule.OVERRIDE:
        p_dirty, uncertainty = p_vlm, float(binary_uncertainty(p_vlm))
    elif rule == VlmRule.AVERAGE:
        p_dirty = (verdict.p_dirty + p_vlm) / 2
        uncertainty = combined_uncertainty(p_dirty, verdict.p_dirty, p_vlm)
    else:
        p_dirty, uncertainty = _vote(verdict, answer, p_vlm)
    types = {t: answer.confidence for t in answer.soiling_types} or verdict.type_scores
    return replace(
        verdict, p_dirty=p_dirty, uncertainty=uncertainty, type_scores=types, source=f"{verdict.source} + VLM ({rule})"
    )
