"""The VLM cascade in the serving core: which frames of a batch the VLM answers, inside a time budget or not,
and the combined verdicts. The policy (band, caps, rules) is models.cascade; the models are models.vlm."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from enum import StrEnum

import numpy as np

from models.cascade import CascadeConfig, CascadePolicy, HourlyBudget, combine_with_vlm
from models.frames import ImageDecodeError, decode_image, image_size
from models.verdict import Verdict
from models.vlm import VlmAnswer, VlmExplainer

log = logging.getLogger(__name__)


class VlmMode(StrEnum):
    BUDGET = "budget"  # /predict: band frames within the batch cap, answered only if in time
    OFF = "off"  # batch pre-annotation: CLIP only; the band frames go to a VLM job
    WAIT = "wait"  # a VLM job: every band frame (hourly cap still applies), however long it takes


def vlm_frame(data: bytes, max_pixels: int, limit: int) -> np.ndarray:
    """The frame at its own aspect ratio, at most `max_pixels` pixels (the processor resizes it further)."""
    width, height = image_size(data)
    scale = min(1.0, math.sqrt(max_pixels / max(width * height, 1)))
    return decode_image(data, (max(1, round(width * scale)), max(1, round(height * scale))), limit)


class VlmCascade:
    def __init__(
        self,
        explainer: VlmExplainer,
        config: CascadeConfig,
        budget_seconds: float,
        max_pixels: int,
        hourly: HourlyBudget | None = None,
    ):
        self.explainer = explainer
        self.config = config
        self.policy = CascadePolicy(config, hourly)
        self.budget_seconds = budget_seconds
        self.max_pixels = max_pixels
        self.counters: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlm")
        self._running: Future | None = None
        self._lock = threading.Lock()

    def version(self, base: str) -> str:
        """The model_version of a prediction the VLM took part in: the served one, the rule, the VLM."""
        return f"{base}+{self.config.version}+{self.explainer.version}"

    def _select(self, verdicts: Sequence[object], mode: VlmMode) -> list[int]:
        uncertainties = [v.uncertainty if isinstance(v, Verdict) else None for v in verdicts]
        if mode == VlmMode.BUDGET:
            return self.policy.select(uncertainties)
        band = [i for i, u in enumerate(uncertainties) if u is not None and self.config.in_band(u)]
        return band[: self.policy.budget.take(len(band))]

    def _explain(self, images: list[bytes], types: Sequence[str], pixel_limit: int) -> list[VlmAnswer | None]:
        frames, readable = [], []
        for i, data in enumerate(images):
            try:
                frames.append(vlm_frame(data, self.explainer.config.max_image_pixels, pixel_limit))
                readable.append(i)
            except ImageDecodeError as exc:
                log.warning("VLM skips a frame: %s", exc)
        answers: list[VlmAnswer | None] = [None] * len(images)
        for i, answer in zip(readable, self.explainer.explain(frames, types), strict=True):
            answers[i] = answer
        return answers

    def answers(
        self, verdicts: Sequence[object], images: Sequence[bytes], types: Sequence[str], mode: VlmMode, limit: int
    ) -> dict[int, VlmAnswer]:
        """index -> the VLM's answer, for the frames it was asked about and answered (in time, in BUDGET mode).
        In BUDGET mode nothing the VLM does (lateness, an error) reaches the caller: CLIP's answer stands."""
        if mode == VlmMode.OFF:
            return {}
        if mode == VlmMode.WAIT:
            chosen = self._select(verdicts, mode)
            found = self._explain([images[i] for i in chosen], types, limit) if chosen else []
        else:
            with self._lock:
                if self._running is not None and not self._running.done():
                    self.counters["vlm_busy"] += 1  # an earlier request's frames still generate
                    return {}
                chosen = self._select(verdicts, mode)
                if not chosen:
                    return {}
                self._running = running = self._pool.submit(self._explain, [images[i] for i in chosen], types, limit)
            try:
                found = running.result(timeout=self.budget_seconds)
            except FutureTimeout:
                self.counters["vlm_late"] += len(chosen)
                return {}
            except Exception:
                log.exception("the VLM failed; serving CLIP's answers")
                self.counters["vlm_failed"] += len(chosen)
                return {}
        answered = {i: answer for i, answer in zip(chosen, found, strict=True) if answer is not None}
        self.counters["vlm_answered"] += len(answered)
        self.counters["vlm_unparsed"] += sum(not a.parsed for a in answered.values())
        return answered

    def combine(self, verdict: Verdict, answer: VlmAnswer) -> Verdict:
        return combine_with_vlm(verdict, answer, self.config.rule)
