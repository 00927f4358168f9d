"""Prompt validation: single prompts, prompt sets and greedy ensembles scored against human labels.

Everything works on cached image embeddings: re-scoring a prompt set touches neither images nor the image
encoder. Selection (greedy search, thresholds) uses one grouped part of the labelled frames; the figures
reported come from the other part, so they are honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from models.zero_shot import PromptSet, ZeroShotScorer
from training.metrics import best_threshold, binary_metrics


@dataclass
class Candidate:
    name: str
    kind: str  # "prompt", "set", "ensemble" or "classifier"
    model: str
    clean: tuple[str, ...] = ()
    dirty: tuple[str, ...] = ()
    p_select: np.ndarray | None = None
    p_report: np.ndarray | None = None
    threshold: float = 0.5
    metrics: dict = field(default_factory=dict)
    selection_metrics: dict = field(default_factory=dict)
    report_tasks: list | None = None  # the report frames it was scored on, when not all of them

    def as_prompt_set(self, base: PromptSet) -> PromptSet:
        return PromptSet(
            name=f"{base.name}-{self.kind}",
            version=base.version,
            classes={"clean": self.clean, "dirty": self.dirty},
            types=base.types,
            type_templates=base.type_templates,
            threshold=round(self.threshold, 4),
        )

    def summary(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "prompts": {"clean": list(self.clean), "dirty": list(self.dirty)},
            "threshold": self.threshold,
            "metrics": self.metrics,
            "selection_metrics": self.selection_metrics,
            **({"report_tasks": self.report_tasks} if self.report_tasks is not None else {}),
        }


def p_dirty(scorer: ZeroShotScorer, embeddings: np.ndarray, clean: Sequence[str], dirty: Sequence[str]) -> np.ndarray:
    """Raw P(dirty) for one pair of class prompt lists (each list averaged as an ensemble)."""
    return scorer.class_probabilities(embeddings, [tuple(clean), tuple(dirty)])[:, 1]


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")


def greedy_ensemble(
    scorer: ZeroShotScorer,
    embeddings: np.ndarray,
    labels: np.ndarray,
    clean_pool: Sequence[str],
    dirty_pool: Sequence[str],
) -> tuple[tuple[str, ...], tuple[str, ...], list[dict]]:
    """Forward selection: start from the best single pair, add the prompt that most improves ROC-AUC, stop when
    nothing helps. Returns the chosen prompts and the search trace."""
    clean_pool, dirty_pool = list(dict.fromkeys(clean_pool)), list(dict.fromkeys(dirty_pool))
    pairs = [(c, d) for c in clean_pool for d in dirty_pool]
    scores = [_auc(labels, p_dirty(scorer, embeddings, [c], [d])) for c, d in pairs]
    best_pair = pairs[int(np.nanargmax(scores))]
    clean, dirty, best = [best_pair[0]], [best_pair[1]], float(np.nanmax(scores))
    trace = [{"step": 0, "added": list(best_pair), "roc_auc": best}]
    while True:
        options = [("clean", p) for p in clean_pool if p not in clean] + [
            ("dirty", p) for p in dirty_pool if p not in dirty
        ]
        if not options:
            break
        tried = []
        for side, prompt in options:
            trial_clean = [*clean, prompt] if side == "clean" else clean
            trial_dirty = [*dirty, prompt] if side == "dirty" else dirty
            tried.append(_auc(labels, p_dirty(scorer, embeddings, trial_clean, trial_dirty)))
        index = int(np.nanargmax(tried))
        if not tried[index] > best + 1e-6:
            break
        side, prompt = options[index]
        (clean if side == "clean" else dirty).append(prompt)
        best = tried[index]
        trace.append({"step": len(trace), "added": [side, prompt], "roc_auc": best})
    return tuple(clean), tuple(dirty), trace


def candidates_for_model(scorer: ZeroShotScorer, prompt_sets: Sequence[PromptSet], model: str) -> list[Candidate]:
    """Every single prompt (against the other class's full set), and every file's set as a whole."""
    found: list[Candidate] = []
    for prompt_set in prompt_sets:
        clean, dirty = prompt_set.classes["clean"], prompt_set.classes["dirty"]
        found.append(Candidate(f"{prompt_set.name}-v{prompt_set.version} (set)", "set", model, clean, dirty))
        found += [Candidate(f"dirty: {d}", "prompt", model, clean, (d,)) for d in dirty]
        found += [Candidate(f"clean: {c}", "prompt", model, (c,), dirty) for c in clean]
    unique: dict[tuple, Candidate] = {}
    for candidate in found:
        unique.setdefault((candidate.clean, candidate.dirty), candidate)
    return list(unique.values())


def evaluate(
    candidate: Candidate, labels: np.ndarray, select: np.ndarray, report: np.ndarray, target_recall: float | None
) -> Candidate:
    """Threshold from the selection part; figures from the report part."""
    candidate.threshold = best_threshold(labels[select], candidate.p_select, target_recall)
    candidate.selection_metrics = binary_metrics(labels[select], candidate.p_select, candidate.threshold)
    candidate.metrics = binary_metrics(labels[report], candidate.p_report, candidate.threshold)
    return candidate
