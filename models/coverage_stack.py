"""The segmenter's dirt coverage as evidence for the frame verdict: a logistic regression stacked on the served
P(dirty) and the frame's coverage per soiling class, anchored on the served verdict (its penalty pulls the
weights towards "P(dirty) unchanged", so uninformative coverage leaves the verdict as it was)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.verdict import Verdict, binary_uncertainty

FEATURES = ("logit_p_dirty", "sqrt_transparent", "sqrt_semi_transparent", "sqrt_opaque", "sqrt_total")
EPSILON = 1e-4  # P(dirty) is clipped to [EPSILON, 1 - EPSILON] before its logit


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def in_band(p_dirty: np.ndarray | float, band: float) -> np.ndarray:
    """Where coverage is used: P(dirty) within `band` of 0.5 (a band of 0: nowhere)."""
    return (np.abs(np.asarray(p_dirty, dtype=np.float64) - 0.5) <= band) & (band > 0)


def stack_features(p_dirty: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """N x 5: the logit of P(dirty), the square root of each soiling class's share of the frame and of the
    total (square roots spread the small shares that separate clean frames from lightly soiled ones).
    `coverage`: N x 4 shares per class, clear first."""
    coverage = np.clip(np.atleast_2d(np.asarray(coverage, dtype=np.float64)), 0, 1)
    soiled = coverage[:, 1:4]
    total = np.clip(1 - coverage[:, :1], 0, 1)
    return np.column_stack([logit(np.atleast_1d(p_dirty)), np.sqrt(soiled), np.sqrt(total)])


@dataclass(frozen=True)
class CoverageStack:
    weights: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0)  # over FEATURES; the prior: P(dirty) unchanged
    bias: float = 0.0
    penalty: float = 1.0

    @classmethod
    def fit(
        cls, p_dirty: np.ndarray, coverage: np.ndarray, labels: np.ndarray, penalty: float = 1.0, steps: int = 50
    ) -> CoverageStack:
        """Penalised maximum likelihood by Newton's method; the penalty `penalty/2 * |w - prior|^2` (the bias only
        lightly penalised) keeps a fit on a few validation frames close to the served verdict."""
        x = stack_features(p_dirty, coverage)
        x = np.column_stack([np.ones(len(x)), x])
        y = np.asarray(labels, dtype=np.float64)
        prior = np.array([0.0, *cls().weights])
        scale = np.full(len(prior), float(penalty))
        scale[0] = 1e-3 * penalty
        theta = prior.copy()
        for _ in range(steps):
            p = sigmoid(x @ theta)
            gradient = x.T @ (p - y) + scale * (theta - prior)
            hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(scale)
            step = np.linalg.solve(hessian, gradient)
            theta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(tuple(float(w) for w in theta[1:]), float(theta[0]), float(penalty))

    def apply(self, p_dirty: np.ndarray | float, coverage: np.ndarray) -> np.ndarray:
        """P(dirty) given the served P(dirty) and the frame coverage (N x 4, clear first; or one frame's 4)."""
        z = stack_features(p_dirty, coverage) @ np.asarray(self.weights) + self.bias
        return sigmoid(z)

    def apply_in_band(self, p_dirty: np.ndarray, coverage: np.ndarray, band: float) -> np.ndarray:
        """P(dirty) as served: stacked inside the band, unchanged outside it."""
        p_dirty = np.asarray(p_dirty, dtype=np.float64)
        chosen = in_band(p_dirty, band)
        out = p_dirty.copy()
        if chosen.any():
            out[chosen] = self.apply(p_dirty[chosen], np.asarray(coverage)[chosen])
        return out

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "weights": list(self.weights), "bias": self.bias, "penalty": self.penalty}

    @classmethod
    def from_dict(cls, record: dict) -> CoverageStack:
        if list(record.get("features", FEATURES)) != list(FEATURES):
            raise ValueError(f"coverage stack over {record.get('features')}, expected {list(FEATURES)}")
        return cls(tuple(float(w) for w in record["weights"]), float(record["bias"]), float(record.get("penalty", 1)))

    def verdict(self, served: Verdict, coverage: np.ndarray, contributor: str) -> Verdict:
        """The served verdict with its P(dirty) and uncertainty replaced by the stacked ones; the source names
        `contributor` (the segmenter's version) and the P(dirty) before coverage is kept for the explanation."""
        p = float(self.apply(served.p_dirty, coverage)[0])
        return replace(
            served,
            p_dirty=p,
            uncertainty=float(binary_uncertainty(p)),
            source=f"{served.source} + dirt coverage by {contributor}",
            p_before_coverage=served.p_dirty,
        )
