"""Simulated active-learning rounds: the known labels play the annotator. Start from 8 labels, add K per round
chosen by each strategy, retrain the probe, and score ROC-AUC on a frozen evaluation set (whole groups no
strategy may pick). Prints ROC-AUC per round per strategy (mean over seeds) and how many labels each strategy
needs to reach 95% of the all-labels ROC-AUC.

Data: the real dev set (../shared/data/nornickel-dev; skipped when absent) and synthetic soiled frames.
Strategies: random, least-confident, combined (uncertainty + k-center), and Label Studio's own next-task order
(least-solved cluster first, then the lowest prediction score, as `_try_uncertainty_sampling` does).

    .venv/bin/python -m benchmarks.al_simulation [--model ViT-B-16] [--pretrained openai] [--k 4] [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks._stack import DEV_SET, dev_set_rows
from models.classifier import LinearProbe
from models.embedding_cache import EmbeddingCache
from models.pipeline import SoilingPipeline
from models.zero_shot import ZeroShotConfig, shared_zero_shot_scorer
from training.eval_set import freeze_groups
from training.selection import Pool, combined, least_confident
from training.synthetic import make_frames

START_LABELS = 8


def simhash_clusters(embeddings: np.ndarray, bits: int = 4, seed: int = 0) -> np.ndarray:
    """A stable cluster id per frame: the signs of its embedding on fixed random hyperplanes."""
    planes = np.random.default_rng(seed).normal(size=(embeddings.shape[1], bits))
    return ((embeddings @ planes) > 0).astype(int) @ (1 << np.arange(bits))


def label_studio_order(p_dirty: np.ndarray, clusters: np.ndarray, labelled: list[int], pool: list[int]) -> list[int]:
    solved = Counter(clusters[labelled])
    score = np.abs(2 * p_dirty - 1)  # lensguard's prediction score (confidence): lowest first
    return sorted(pool, key=lambda i: (solved[clusters[i]], score[i]))


def pick(strategy: str, k: int, p_dirty, embeddings, clusters, labelled, pool, rng) -> list[int]:
    if strategy == "random":
        return list(rng.choice(pool, size=min(k, len(pool)), replace=False))
    if strategy == "label-studio":
        return label_studio_order(p_dirty, clusters, labelled, pool)[:k]
    sub = Pool(p_dirty[pool], embeddings[pool], [str(i) for i in pool])
    order = least_confident(sub) if strategy == "least-confident" else combined(sub, k)
    return [pool[i] for i in order[:k]]


def simulate(embeddings, labels, groups, k: int, seeds: int, strategies: list[str]) -> None:
    clusters = simhash_clusters(embeddings)
    groups = np.asarray(groups)
    eval_groups = freeze_groups(groups, labels, 0.25, 2)
    frozen = np.flatnonzero(np.isin(groups, list(eval_groups)))
    candidates = np.flatnonzero(~np.isin(groups, list(eval_groups)))
    full = LinearProbe.fit(embeddings[candidates], labels[candidates], "bench")
    ceiling = roc_auc_score(labels[frozen], full.predict_proba(embeddings[frozen]))
    print(
        f"  {len(candidates)} frames to label, frozen evaluation set {len(frozen)} frames "
        f"({int(labels[frozen].sum())} dirty); all-labels ROC-AUC {ceiling:.3f}"
    )
    curves: dict[str, list[list[float]]] = {s: [] for s in strategies}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        dirty, clean = candidates[labels[candidates] == 1], candidates[labels[candidates] == 0]
        start = list(rng.choice(dirty, 2, replace=False)) + list(rng.choice(clean, START_LABELS - 2, replace=False))
        for strategy in strategies:
            labelled, curve = list(start), []
            while True:
                probe = LinearProbe.fit(embeddings[labelled], labels[labelled], "bench")
                curve.append(roc_auc_score(labels[frozen], probe.predict_proba(embeddings[frozen])))
                pool = [int(i) for i in candidates if i not in set(labelled)]
                if not pool:
                    break
                p_dirty = probe.predict_proba(embeddings)
                labelled += pick(strategy, k, p_dirty, embeddings, clusters, labelled, pool, rng)
            curves[strategy].append(curve)
    rounds = min(len(c) for runs in curves.values() for c in runs)
    print("  labels " + " ".join(f"{START_LABELS + r * k:>6}" for r in range(rounds)))
    for strategy, runs in curves.items():
        mean = np.mean([run[:rounds] for run in runs], axis=0)
        reached = next((START_LABELS + r * k for r, v in enumerate(mean) if v >= 0.95 * ceiling), None)
        print(f"  {strategy:<15}" + " ".join(f"{v:6.3f}" for v in mean) + f"   95% of ceiling at {reached} labels")


def embed(frames: list[bytes], model: str, pretrained: str | None) -> np.ndarray:
    config = ZeroShotConfig(model_name=model, pretrained=pretrained, allow_random_weights=True, device="cpu")
    scorer = shared_zero_shot_scorer(config)
    cache = EmbeddingCache(Path(tempfile.gettempdir()) / "lensguard-al-simulation.sqlite3")
    vectors = SoilingPipeline(scorer, cache).embed(frames)
    print(f"  encoder {scorer.clip.identity}{' (RANDOM weights)' if scorer.clip.random_weights else ''}")
    return np.stack(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--k", type=int, default=4, help="labels added per round")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--synthetic", type=int, default=160, help="synthetic frames (0: skip)")
    args = parser.parse_args()
    strategies = ["random", "least-confident", "combined", "label-studio"]
    rows = dev_set_rows()
    if rows:
        print(f"real dev set ({len(rows)} frames), K={args.k}, {args.seeds} seeds:")
        frames = [(DEV_SET / r["image"]).read_bytes() for r in rows]
        labels = np.array([r["label"] == "dirty" for r in rows], dtype=int)
        simulate(
            embed(frames, args.model, args.pretrained),
            labels,
            [r["group"] for r in rows],
            args.k,
            args.seeds,
            strategies,
        )
    if args.synthetic:
        print(f"synthetic frames ({args.synthetic}), K={args.k}, {args.seeds} seeds:")
        made = make_frames(args.synthetic, 320, 180, dirty_fraction=0.3, seed=7)
        labels = np.array([int(f.is_dirty) for f in made])
        groups = [f"scene:{i // 4}" for i in range(len(made))]  # consecutive frames share a scene
        simulate(
            embed([f.jpeg() for f in made], args.model, args.pretrained), labels, groups, args.k, args.seeds, strategies
        )


if __name__ == "__main__":
    main()
