import numpy as np
import pytest

from training.selection import (
    Pool,
    k_center_greedy,
    least_confident,
    likely_dirty,
    margin,
    select,
    suppress_near_duplicates,
)


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_k_center_greedy_picks_spread_points_not_a_cluster():
    rng = np.random.default_rng(0)
    cluster = unit(np.array([1.0, 0, 0]) + rng.normal(0, 0.01, (20, 3)))
    outliers = unit([[0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]])
    embeddings = np.concatenate([cluster, outliers])
    picked = set(k_center_greedy(embeddings, 4).tolist())
    assert {20, 21, 22} <= picked, "the three far points are picked before a second cluster member"
    assert len(picked & set(range(20))) == 1


def test_uncertainty_strategies_put_the_coin_flips_first():
    pool = Pool(p_dirty=np.array([0.99, 0.52, 0.1, 0.45, 0.7]), embeddings=np.eye(5), groups=list("abcde"))
    assert least_confident(pool)[:2].tolist() == [1, 3]
    assert margin(pool)[:2].tolist() == [1, 3]
    assert likely_dirty(pool)[0] == 0


def test_consecutive_frames_of_one_video_do_not_fill_the_budget():
    p = np.array([0.5, 0.5, 0.51, 0.52, 0.9, 0.95])
    embeddings = unit(np.eye(6) + 0.01)
    groups = ["video1"] * 4 + ["video2", "video3"]
    chosen = select(Pool(p, embeddings, groups), "least-confident", budget=3)
    assert chosen.tolist() == [0, 4, 5]
    two_each = select(Pool(p, embeddings, groups), "least-confident", budget=3, per_group=2)
    assert two_each.tolist() == [0, 1, 4]


def test_near_identical_embeddings_are_suppressed_across_groups():
    embeddings = unit([[1, 0, 0], [1, 0.001, 0], [0, 1, 0]])
    kept = suppress_near_duplicates(np.array([0, 1, 2]), ["a", "b", "c"], embeddings)
    assert kept.tolist() == [0, 2]


def test_combined_takes_uncertain_frames_then_spreads_them():
    rng = np.random.default_rng(1)
    embeddings = unit(rng.normal(size=(40, 8)))
    p = np.linspace(0.01, 0.99, 40)
    chosen = select(Pool(p, embeddings, [str(i) for i in range(40)]), "combined", budget=5)
    uncertain = set(least_confident(Pool(p, embeddings, [])).tolist()[:20])
    assert len(chosen) == 5 and set(chosen.tolist()) <= uncertain


def test_disagreement_needs_both_models_and_unknown_strategies_fail_clearly():
    pool = Pool(np.full(3, 0.5), unit(np.eye(3)), list("abc"))
    with pytest.raises(ValueError, match="train one first"):
        select(pool, "disagreement", 2)
    with pytest.raises(ValueError, match="unknown strategy"):
        select(pool, "vibes", 2)
    pool.p_zero_shot, pool.p_classifier = np.array([0.1, 0.9, 0.5]), np.array([0.9, 0.85, 0.5])
    assert select(pool, "disagreement", 1).tolist() == [0]
