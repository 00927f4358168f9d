"""Which unlabelled frames deserve an annotator's time: uncertainty, disagreement, likely dirty, diversity.

Every strategy returns candidate indices best first; `select` then suppresses near-duplicates (one scene may
not fill the budget) and cuts to the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Pool:
    """The unlabelled frames a strategy chooses from."""

    p_dirty: np.ndarray  # served probability
    embeddings: np.ndarray  # L2-normalised CLIP embeddings
    groups: Sequence[str]  # near-duplicate groups (sequence/camera metadata or hash clusters)
    p_zero_shot: np.ndarray | None = None
    p_classifier: np.ndarray | None = None


def least_confident(pool: Pool) -> np.ndarray:
    confidence = np.maximum(pool.p_dirty, 1 - pool.p_dirty)
    return np.argsort(confidence, kind="stable")


def margin(pool: Pool) -> np.ndarray:
    return np.argsort(np.abs(2 * pool.p_dirty - 1), kind="stable")


def entropy(pool: Pool) -> np.ndarray:
    p = np.clip(pool.p_dirty, 1e-12, 1 - 1e-12)
    information = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.argsort(-information, kind="stable")


def disagreement(pool: Pool) -> np.ndarray:
    if pool.p_zero_shot is None or pool.p_classifier is None:
        raise ValueError("disagreement needs an active classifier next to zero-shot; train one first")
    return np.argsort(-np.abs(pool.p_zero_shot - pool.p_classifier), kind="stable")


def likely_dirty(pool: Pool) -> np.ndarray:
    return np.argsort(-pool.p_dirty, kind="stable")


def k_center_greedy(embeddings: np.ndarray, k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Farthest-first traversal: each pick is the candidate farthest (cosine) from everything picked so far.
    O(k x candidates) time, memory for one distance per candidate (no pairwise matrix)."""
    points = embeddings if candidates is None else embeddings[np.asarray(candidates)]
    candidates = np.arange(len(embeddings)) if candidates is None else np.asarray(candidates)
    if len(candidates) == 0 or k <= 0:
        return np.zeros(0, dtype=int)
    centre = points.mean(axis=0)
    first = int(np.argmax(_row_distances(points, centre)))  # the most atypical frame starts
    chosen = [first]
    distance = 1 - points @ points[first]
    distance[first] = -np.inf
    for _ in range(min(k, len(candidates)) - 1):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        np.minimum(distance, 1 - points @ points[nxt], out=distance)
        distance[nxt] = -np.inf  # the minimum keeps every pick at -inf
    return candidates[np.array(chosen)]


def _row_distances(points: np.ndarray, centre: np.ndarray, block: int = 8192) -> np.ndarray:
    """Euclidean distance of each row to `centre`, a block of rows at a time (no n x d temporary)."""
    return np.concatenate(
        [np.linalg.norm(points[i : i + block] - centre, axis=1) for i in range(0, len(points), block)] or [np.zeros(0)]
    )


def _then_rest(picked: np.ndarray, n: int, key: np.ndarray | None = None) -> np.ndarray:
    """`picked`, then every other index (by `key` ascending, else in index order)."""
    rest = np.setdiff1d(np.arange(n), picked)
    return np.concatenate([picked, rest if key is None else rest[np.argsort(key[rest], kind="stable")]])


def diversity(pool: Pool, budget: int = 0, factor: int = 4) -> np.ndarray:
    """k-center greedy over all frames for `factor x budget` picks (all frames when no budget), then the rest."""
    n = len(pool.embeddings)
    return _then_rest(k_center_greedy(pool.embeddings, min(n, budget * factor) if budget else n), n)


def combined(pool: Pool, budget: int = 0, factor: int = 4) -> np.ndarray:
    """The most uncertain `factor x budget` frames, then spread among them by k-center greedy."""
    uncertain = least_confident(pool)[: max(budget * factor, budget)]
    spread = k_center_greedy(pool.embeddings, len(uncertain), uncertain)
    return _then_rest(spread, len(pool.p_dirty), np.maximum(pool.p_dirty, 1 - pool.p_dirty))


STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "least-confident": least_confident,
    "margin": margin,
    "entropy": entropy,
    "disagreement": disagreement,
    "likely-dirty": likely_dirty,
    "diversity": diversity,
    "combined": combined,
}
TAB_TITLES = {
    "least-confident": "Label first: uncertain",
    "margin": "Label first: smallest margin",
    "entropy": "Label first: highest entropy",
    "disagreement": "Label first: models disagree",
    "likely-dirty": "Draw masks: likely dirty",
    "diversity": "Label first: diverse",
    "combined": "Label first: uncertain and diverse",
}


def suppress_near_duplicates(
    order: np.ndarray,
    groups: Sequence[str],
    embeddings: np.ndarray,
    per_group: int = 1,
    max_similarity: float = 0.97,
    limit: int | None = None,
) -> np.ndarray:
    """Keep at most `per_group` frames of one group, and none almost identical to a frame already kept; stop
    once `limit` are kept. O(considered x kept) time, memory for the kept embeddings only."""
    limit = len(order) if limit is None else limit
    kept: list[int] = []
    kept_vectors = np.zeros((max(min(limit, len(order)), 1), embeddings.shape[1]), dtype=embeddings.dtype)
    seen: dict[str, int] = {}
    for index in order:
        if len(kept) >= limit:
            break
        group = groups[index]
        if seen.get(group, 0) >= per_group:
            continue
        if kept and float(np.max(kept_vectors[: len(kept)] @ embeddings[index])) > max_similarity:
            continue
        kept_vectors[len(kept)] = embeddings[index]
        kept.append(int(index))
        seen[group] = seen.get(group, 0) + 1
    return np.array(kept, dtype=int)


def ranked(pool: Pool, strategy: str, budget: int) -> np.ndarray:
    """Every frame's index, best candidate first, by `strategy`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    rank = STRATEGIES[strategy]
    return rank(pool, budget) if strategy in ("diversity", "combined") else rank(pool)


def select(pool: Pool, strategy: str, budget: int, per_group: int = 1) -> np.ndarray:
    order = ranked(pool, strategy, budget)
    return suppress_near_duplicates(order, pool.groups, pool.embeddings, per_group, limit=budget)
