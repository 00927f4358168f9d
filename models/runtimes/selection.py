"""Open the runtime asked for (or pick one by measurement), after checking its fidelity against fp32 torch."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError
from models.runtimes.factory import REFERENCE, EncoderSource, create_encoder
from models.runtimes.fidelity import (
    Fidelity,
    FidelityError,
    FidelityFloors,
    Verdicts,
    enforce,
    fidelity_frames,
    measure_fidelity,
)
from models.runtimes.machine import machine_key
from models.runtimes.records import read_record, write_record

log = logging.getLogger(__name__)

AUTO = "auto"
AUTO_CANDIDATES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
CHOICE_FILE = "runtime-choice.json"
FIDELITY_FRAMES = 100  # one disagreeing verdict in 100 still meets a 99% floor
SPEED_BATCH = 8


@dataclass
class OpenedRuntime:
    encoder: ImageEncoder
    requested: str
    fidelity: Fidelity | None  # None for the fp32 torch reference itself
    candidates: dict[str, str] = field(default_factory=dict)  # auto: runtime -> frames/s or why it was left out

    @property
    def runtime(self) -> str:
        return self.encoder.runtime

    @property
    def interchangeable(self) -> bool:
        """Shares the fp32 encoder identity in the embedding cache."""
        return self.fidelity is None or self.fidelity.interchangeable

    def to_json(self) -> dict:
        return {
            "runtime": self.runtime,
            "requested": self.requested,
            "fidelity": self.fidelity.to_json() if self.fidelity else None,
            "interchangeable_with_fp32": self.interchangeable,
            "candidates": self.candidates,
        }


def encode_in_batches(encoder: ImageEncoder, frames: np.ndarray, batch: int = SPEED_BATCH) -> np.ndarray:
    return np.concatenate([encoder.encode(frames[i : i + batch]) for i in range(0, len(frames), batch)])


def _cached_embeddings(source: EncoderSource, name: str, compute) -> np.ndarray:
    if source.cache_root is None:
        return compute()

    def build(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, compute())

    return np.load(source.cache.ensure(name, build))


def fidelity_of(
    encoder: ImageEncoder,
    source: EncoderSource,
    reference: ImageEncoder,
    verdicts: Verdicts | None,
    count: int = FIDELITY_FRAMES,
) -> Fidelity:
    """Cosine and verdict agreement vs fp32 torch on a fixed frame set; embeddings cached per weights digest."""
    frames = fidelity_frames(count, source.image_size)
    expected = _cached_embeddings(
        source, f"fidelity{count}-{REFERENCE}.npy", lambda: encode_in_batches(reference, frames)
    )
    actual = _cached_embeddings(
        source, f"fidelity{count}-{encoder.runtime}.npy", lambda: encode_in_batches(encoder, frames)
    )
    return measure_fidelity(expected, actual, verdicts)


def frames_per_second(encoder: ImageEncoder, frames: np.ndarray, batch: int = SPEED_BATCH, rounds: int = 2) -> float:
    encoder.encode(frames[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(rounds):
        encoder.encode(frames[(i * batch) % len(frames) :][:batch])
    return rounds * batch / (time.perf_counter() - started)


def open_runtime(
    requested: str,
    source: EncoderSource,
    floors: FidelityFloors = FidelityFloors(),  # noqa: B008 (frozen)
    verdicts: Verdicts | None = None,
    fidelity_count: int = FIDELITY_FRAMES,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
) -> OpenedRuntime:
    """The runtime named (FidelityError when it misses the floors), or with `auto` the fastest that passes.

    `auto` measures every candidate once and records the winner per machine, model and weights in the data dir;
    later starts reopen the recorded one (its fidelity is still checked, from cached embeddings).
    """
    reference = create_encoder(REFERENCE, source)
    if requested == REFERENCE:
        return OpenedRuntime(reference, requested, None)
    if requested != AUTO:
        encoder = create_encoder(requested, source)
        fidelity = fidelity_of(encoder, source, reference, verdicts, fidelity_count)
        enforce(requested, fidelity, floors)
        return OpenedRuntime(encoder, requested, fidelity)
    if source.device.type != "cpu":
        return OpenedRuntime(reference, requested, None, {REFERENCE: "the only runtime on a GPU"})
    if source.cache_root is None:
        return OpenedRuntime(reference, requested, None, {REFERENCE: "no runtime directory to keep exports in"})
    key = f"{machine_key(source.device)}|{source.model_name}|{source.digest[:16]}"
    record_path = source.cache_root / CHOICE_FILE
    recorded = read_record(record_path, key)
    if recorded and recorded.get("runtime") in candidates:
        try:
            opened = open_runtime(recorded["runtime"], source, floors, verdicts, fidelity_count)
            opened.requested, opened.candidates = AUTO, recorded.get("candidates", {})
            return opened
        except (RuntimeUnavailableError, FidelityError) as exc:
            log.warning("recorded runtime %s no longer usable (%s): measuring again", recorded["runtime"], exc)
    opened = _measure_and_choose(source, reference, floors, verdicts, fidelity_count, candidates)
    write_record(record_path, key, {"runtime": opened.runtime, "candidates": opened.candidates})
    return opened


def _measure_and_choose(
    source: EncoderSource,
    reference: ImageEncoder,
    floors: FidelityFloors,
    verdicts: Verdicts | None,
    fidelity_count: int,
    candidates: tuple[str, ...],
) -> OpenedRuntime:
    """Time every candidate briefly, then check fidelity from the fastest down: the first that passes wins."""
    frames = fidelity_frames(3 * SPEED_BATCH, source.image_size, seed=99)
    report: dict[str, str] = {}
    timed: list[tuple[float, ImageEncoder]] = []
    for name in candidates:
        try:
            encoder = reference if name == REFERENCE else create_encoder(name, source)
        except RuntimeUnavailableError as exc:
            report[name] = f"left out: {exc}"
            continue
        rate = frames_per_second(encoder, frames)
        report[name] = f"{rate:.2f} frames/s"
        timed.append((rate, encoder))
    for rate, encoder in sorted(timed, key=lambda pair: -pair[0]):
        fidelity = None
        if encoder.runtime != REFERENCE:
            fidelity = fidelity_of(encoder, source, reference, verdicts, fidelity_count)
            try:
                enforce(encoder.runtime, fidelity, floors)
            except FidelityError as exc:
                report[encoder.runtime] += f"; left out: {exc}"
                continue
            report[encoder.runtime] += f"; {fidelity.describe()}"
        log.info("runtime %s chosen: %.2f frames/s (%s)", encoder.runtime, rate, report)
        return OpenedRuntime(encoder, AUTO, fidelity, report)
    raise RuntimeUnavailableError(f"no runtime among {', '.join(candidates)} can run here: {report}")
