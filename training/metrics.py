"""Binary soiling metrics, threshold choice and the report plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def best_threshold(labels: np.ndarray, p_dirty: np.ndarray, target_recall: float | None = None) -> float:
    """Maximum balanced accuracy, or the highest threshold that reaches `target_recall` for dirty."""
    candidates = np.unique(np.concatenate([[0.5], p_dirty]))
    if target_recall is not None:
        reaching = [t for t in candidates if recall_score(labels, p_dirty >= t, zero_division=0) >= target_recall]
        return float(max(reaching)) if reaching else float(candidates.min())
    scores = [balanced_accuracy_score(labels, p_dirty >= t) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def roc_auc(labels: np.ndarray, p_dirty: np.ndarray) -> float | None:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties counted half: the same figure as scikit-learn's, fast
    enough for a thousand bootstrap resamples."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return None
    ranks = rankdata(np.asarray(p_dirty, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def metric_value(name: str, labels: np.ndarray, p_dirty: np.ndarray, threshold: float = 0.5) -> float | None:
    """One figure of `binary_metrics`, computed alone (promotion bootstraps compute it many times)."""
    labels = np.asarray(labels).astype(int)
    if name == "roc_auc":
        return roc_auc(labels, p_dirty)
    predicted = (np.asarray(p_dirty) >= threshold).astype(int)
    if name == "accuracy":
        return float((predicted == labels).mean())
    if name == "balanced_accuracy":
        if len(np.unique(labels)) < 2:
            return None
        return float(np.mean([(predicted[labels == c] == c).mean() for c in (0, 1)]))
    return binary_metrics(labels, p_dirty, threshold)[name]


def binary_metrics(labels: np.ndarray, p_dirty: np.ndarray, threshold: float | None = None) -> dict:
    labels = np.asarray(labels).astype(int)
    p_dirty = np.asarray(p_dirty, dtype=np.float64)
    threshold = best_threshold(labels, p_dirty) if threshold is None else threshold
    predicted = (p_dirty >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "n": len(labels),
        "n_dirty": int(labels.sum()),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if both else None,
        "roc_auc": float(roc_auc_score(labels, p_dirty)) if both else None,
        "pr_auc": float(average_precision_score(labels, p_dirty)) if both else None,
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        # rows: true clean, true dirty; columns: predicted clean, predicted dirty
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
    }


def save_report_plot(path: Path, labels: np.ndarray, curves: dict[str, np.ndarray], metrics: dict[str, dict]) -> None:
    """ROC curves of every scorer plus the confusion matrix of each, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(curves), figsize=(4.2 * (1 + len(curves)), 4))
    roc_axis = axes[0]
    for name, p in curves.items():
        if len(np.unique(labels)) == 2:
            fpr, tpr, _ = roc_curve(labels, p)
            roc_axis.plot(fpr, tpr, label=f"{name} (AUC {metrics[name]['roc_auc']:.3f})")
    roc_axis.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
    roc_axis.legend(loc="lower right", fontsize=8)
    for axis, name in zip(axes[1:], curves, strict=True):
        matrix = np.array(metrics[name]["confusion_matrix"])
        axis.imshow(matrix, cmap="Blues")
        for (row, col), value in np.ndenumerate(matrix):
            colour = "white" if value > matrix.max() / 2 else "black"
            axis.text(col, row, str(value), ha="center", va="center", fontsize=12, color=colour)
        axis.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["clean", "dirty"],
            yticklabels=["clean", "dirty"],
            xlabel="predicted",
            ylabel="true",
            title=f"{name} @ {metrics[name]['threshold']:.2f}",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
