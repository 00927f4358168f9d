"""The active-learning loop's record: after each retraining, labels added, which strategy picked them, and
ROC-AUC on the frozen evaluation set over label count (one point per promotion attempt), as JSON and a PNG in
the registry."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime

from models.registry import Registry

STRATEGY_PREFIX = "lensguard_"


def picked_by(tasks: list[dict]) -> dict[str, int]:
    """How many of these labelled tasks each selection strategy had ranked (its `lensguard_*` data field)."""
    counts: Counter[str] = Counter()
    for task in tasks:
        fields = [k for k in (task.get("data") or {}) if k.startswith(STRATEGY_PREFIX)]
        counts.update(k.removeprefix(STRATEGY_PREFIX).replace("_", "-") for k in fields)
        if not fields:
            counts["unselected"] += 1
    return dict(counts)


def record(
    registry: Registry, project: str | int, kind: str, version: str, labelled_tasks: list[dict], roc_auc, promoted: bool
) -> dict:
    """Appends this retraining to the kind's `learning_curve.json` (and redraws `learning_curve.png`), kept in the
    registry next to the versions, so it is shared by every worker however the registry is stored."""
    stored = registry.read_kind_file(project, kind, "learning_curve.json")
    history = json.loads(stored) if stored else []
    previous = history[-1] if history else {"labels": 0, "picked_by": {}}
    counts = picked_by(labelled_tasks)
    entry = {
        "version": version,
        "at": datetime.now(UTC).isoformat(),
        "labels": len(labelled_tasks),
        "added": len(labelled_tasks) - previous["labels"],
        "picked_by": counts,
        "added_by": {
            k: v - previous["picked_by"].get(k, 0) for k, v in counts.items() if v - previous["picked_by"].get(k, 0)
        },
        "roc_auc": roc_auc,
        "promoted": promoted,
    }
    history.append(entry)
    registry.write_kind_file(project, kind, "learning_curve.json", json.dumps(history, indent=2).encode())
    registry.write_kind_file(project, kind, "learning_curve.png", _plot(history))
    return entry


def _plot(history: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5, 3.5))
    points = [(h["labels"], h["roc_auc"]) for h in history if h["roc_auc"] is not None]
    if points:
        axis.plot(*zip(*points, strict=True), marker="o")
    for h in history:
        if h["roc_auc"] is not None and h["promoted"]:
            axis.annotate(
                "promoted", (h["labels"], h["roc_auc"]), fontsize=7, xytext=(3, -10), textcoords="offset points"
            )
    axis.set(xlabel="labelled frames", ylabel="ROC-AUC, frozen evaluation set", title="active-learning loop")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=90)
    plt.close(fig)
    return image.getvalue()
