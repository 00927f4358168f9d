"""Promotion on the frozen evaluation set: the candidate and the active version scored on the same frames,
with a bootstrap over groups of the metric difference; a difference within noise does not promote."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MIN_GROUPS = 5  # fewer groups and resampling them says nothing about noise (2 groups: one interval, a point)


def bootstrap_difference(
    groups: Sequence[str],
    difference_on: Callable[[np.ndarray], float | None],
    resamples: int = 1000,
    confidence: float = 0.9,
    seed: int = 0,
    min_groups: int = MIN_GROUPS,
) -> dict:
    """Resample whole groups with replacement; `difference_on(frame indices)` gives candidate minus active
    (None where the metric is undefined, e.g. one class only). Returns the mean and the central interval; no
    interval (`low` None) from fewer than `min_groups` groups."""
    groups = np.asarray(groups)
    names = np.unique(groups)
    members = [np.flatnonzero(groups == name) for name in names]
    rng = np.random.default_rng(seed)
    observed = difference_on(np.arange(len(groups)))
    if len(names) < min_groups:
        return {"observed": observed, "low": None, "high": None, "confidence": confidence, "resamples": 0}
    differences = []
    for _ in range(resamples):
        picked = rng.integers(len(names), size=len(names))
        value = difference_on(np.concatenate([members[i] for i in picked]))
        if value is not None:
            differences.append(value)
    if observed is None or len(differences) < resamples // 4:
        return {"observed": observed, "low": None, "high": None, "confidence": confidence, "resamples": 0}
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return {
        "observed": float(observed),
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "resamples": len(differences),
    }


def decide(new_score: float | None, active_name: str | None, difference: dict | None) -> tuple[bool, str]:
    """(promote, why). The first version is promoted; later ones only when better beyond noise."""
    if active_name is None:
        return True, "first version"
    if new_score is None or difference is None or difference["low"] is None:
        return False, (
            f"the evaluation set cannot tell them apart (too few frames, fewer than {MIN_GROUPS} groups, "
            "or one class only)"
        )
    if difference["low"] > 0:
        return True, (
            f"better than {active_name} by {difference['observed']:+.4f} "
            f"({difference['confidence']:.0%} interval {difference['low']:+.4f}..{difference['high']:+.4f})"
        )
    return False, (
        f"not better than {active_name} beyond noise: {difference['observed']:+.4f} "
        f"({difference['confidence']:.0%} interval {difference['low']:+.4f}..{difference['high']:+.4f})"
    )
