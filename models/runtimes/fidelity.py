"""How closely an optimised runtime reproduces the fp32 PyTorch image embeddings, and the floors it must meet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

# Embeddings this close to fp32 PyTorch's are treated as the same encoder by the embedding cache (and by
# classifiers trained on cached embeddings). fp32 exports land at ~0.99999; bf16 and int8 do not.
INTERCHANGEABLE_MIN_COSINE = 0.999

Verdicts = Callable[[np.ndarray], np.ndarray]  # embeddings -> bool "dirty" per frame


class FidelityError(RuntimeError):
    """A runtime whose embeddings are too far from fp32 PyTorch's to serve."""


@dataclass(frozen=True)
class FidelityFloors:
    mean_cosine: float = 0.995
    verdict_agreement: float = 0.99


@dataclass(frozen=True)
class Fidelity:
    frames: int
    mean_cosine: float
    min_cosine: float
    verdict_agreement: float | None  # None: no verdict function given

    @property
    def interchangeable(self) -> bool:
        """Close enough to share fp32's encoder identity (cached embeddings, trained probes)."""
        return self.min_cosine >= INTERCHANGEABLE_MIN_COSINE

    def passes(self, floors: FidelityFloors) -> bool:
        agreement_ok = self.verdict_agreement is None or self.verdict_agreement >= floors.verdict_agreement
        return self.mean_cosine >= floors.mean_cosine and agreement_ok

    def describe(self) -> str:
        agreement = "" if self.verdict_agreement is None else f", verdict agreement {self.verdict_agreement:.1%}"
        return f"cosine vs fp32 mean {self.mean_cosine:.5f} min {self.min_cosine:.5f}{agreement} ({self.frames} frames)"

    def to_json(self) -> dict:
        return asdict(self)


def measure_fidelity(reference: np.ndarray, candidate: np.ndarray, verdicts: Verdicts | None = None) -> Fidelity:
    """Row-wise cosine of two (n, dim) embedding matrices, and how often the verdicts they give agree."""
    if reference.shape != candidate.shape or not len(reference):
        raise ValueError(f"embedding shapes differ or are empty: {reference.shape} vs {candidate.shape}")
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True).clip(1e-12)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True).clip(1e-12)
    cosine = (ref * cand).sum(axis=1)
    agreement = None
    if verdicts is not None:
        agreement = float((np.asarray(verdicts(reference)) == np.asarray(verdicts(candidate))).mean())
    return Fidelity(len(cosine), float(cosine.mean()), float(cosine.min()), agreement)


def enforce(runtime: str, fidelity: Fidelity, floors: FidelityFloors) -> None:
    if not fidelity.passes(floors):
        raise FidelityError(
            f"runtime {runtime!r} refused: {fidelity.describe()} is below the floors (mean cosine "
            f"{floors.mean_cosine}, verdict agreement {floors.verdict_agreement:.1%}). Use LENSGUARD_RUNTIME=torch, "
            "another runtime, or lower LENSGUARD_RUNTIME_MIN_COSINE / LENSGUARD_RUNTIME_MIN_AGREEMENT."
        )


def fidelity_frames(count: int, size: tuple[int, int], seed: int = 1234) -> np.ndarray:
    """A fixed set of uint8 (count, H, W, 3) frames: smooth scenes with blobs and streaks, like soiled lenses.

    The same for every run and runtime, so fidelity figures (and their cache) are comparable.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
        rows = np.linspace(0, 5, height).astype(int)
        cols = np.linspace(0, 5, width).astype(int)
        scene = coarse[rows][:, cols]
        scene += np.sin(xx / rng.uniform(4, 40) + rng.uniform(0, 6))[..., None] * rng.uniform(0, 60)
        for _ in range(rng.integers(0, 6)):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, width / 4)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            scene = scene * (1 - blob * rng.uniform(0.3, 1)) + blob * rng.uniform(0, 255, 3) * rng.uniform(0.3, 1)
        scene += rng.normal(0, rng.uniform(0, 12), scene.shape)
        frames[i] = scene.clip(0, 255).astype(np.uint8)
    return frames
