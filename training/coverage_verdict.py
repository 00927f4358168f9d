"""The segmenter job's coverage verdict: a stacker (models/coverage_stack.py) fitted on the inner validation
frames over the served P(dirty) and the new segmenter's coverage, judged on the frozen evaluation set against
the verdict without coverage (ROC-AUC, bootstrap over groups) and enabled only when better beyond noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.coverage_stack import CoverageStack, in_band
from models.segmenter import Segmenter
from models.verdict import Verdict
from training.loader import in_chunks
from training.metrics import roc_auc
from training.promotion import bootstrap_difference, decide
from training.served import ServedScore

MIN_PER_CLASS = 2  # labelled frames of each class the inner validation split needs to fit the stacker
CHUNK = 32  # frames fetched, scored and segmented at once
WITHOUT = "the verdict without coverage"


def predicted_coverage(segmenter: Segmenter, pixels: Sequence[np.ndarray], frames: np.ndarray) -> np.ndarray:
    """N x C frame coverage per class of `pixels[frames]` (at the segmenter's size), as serving computes it."""
    parts = [np.zeros((0, 4))]
    for chunk in in_chunks(pixels, frames, CHUNK):
        masks, tiles = segmenter.predict_with_coverage(chunk, (4, 4))
        parts.append(segmenter.frame_coverages(masks, tiles))
    return np.concatenate(parts)


def served_p_dirty(score: ServedScore, images: Sequence[bytes | Exception], type_labels: Sequence[str]) -> np.ndarray:
    """The served P(dirty) per image; NaN where the image could not be fetched or scored."""
    p = np.full(len(images), np.nan)
    good = [i for i, image in enumerate(images) if isinstance(image, bytes)]
    for i, verdict in zip(good, score([images[i] for i in good], type_labels) if good else [], strict=True):
        if isinstance(verdict, Verdict):
            p[i] = verdict.p_dirty
    return p


def choose_coverage_stack(
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray, np.ndarray],
    eval_groups: Sequence[str],
    band: float,
    resamples: int = 1000,
    confidence: float = 0.9,
) -> tuple[CoverageStack | None, dict]:
    """`validation`, `evaluation`: (served P(dirty), N x 4 coverage, labels). The stacker is fitted on the
    validation frames and enabled when the verdict as served (stacked inside the band) beats the verdict without
    coverage on the evaluation frames beyond noise, by the promotion rule. Returns (the enabled stacker or None,
    the report: both ROC-AUCs, frames and groups counted, the decision)."""
    (p_val, cov_val, y_val), (p_eval, cov_eval, y_eval) = validation, evaluation
    y_val, y_eval = np.asarray(y_val, dtype=int), np.asarray(y_eval, dtype=int)
    report: dict = {
        "enabled": False,
        "band": band,
        "validation": {"frames": len(y_val), "dirty": int(y_val.sum())},
        "evaluation": {"frames": len(y_eval), "groups": len(set(eval_groups)), "dirty": int(y_eval.sum())},
    }
    counts = np.bincount(y_val, minlength=2)
    if not len(y_eval):
        report["decision"] = "no frames of the frozen evaluation set to judge it on"
        return None, report
    if counts.min() < MIN_PER_CLASS:
        report["decision"] = (
            f"too few labelled frames to fit on: the inner validation split has {counts[1]} dirty and {counts[0]}"
            f" clean frames, {MIN_PER_CLASS} of each needed"
        )
        return None, report
    stack = CoverageStack.fit(p_val, cov_val, y_val)
    stacked = stack.apply_in_band(p_eval, cov_eval, band)

    def difference(positions: np.ndarray) -> float | None:
        new, old = roc_auc(y_eval[positions], stacked[positions]), roc_auc(y_eval[positions], p_eval[positions])
        return None if new is None or old is None else new - old

    with_coverage = roc_auc(y_eval, stacked)
    compared = bootstrap_difference(list(eval_groups), difference, resamples, confidence)
    enabled, why = decide(with_coverage, WITHOUT, compared)
    report["validation"] |= {
        "roc_auc_without": roc_auc(y_val, p_val),
        "roc_auc_with": roc_auc(y_val, stack.apply_in_band(p_val, cov_val, band)),
    }
    report["evaluation"] |= {
        "roc_auc_without": roc_auc(y_eval, p_eval),
        "roc_auc_with": with_coverage,
        "roc_auc_with_all_frames": roc_auc(y_eval, stack.apply(p_eval, cov_eval)) if len(y_eval) else None,
        "in_band": int(in_band(p_eval, band).sum()),
        "difference": compared,
    }
    report |= {"enabled": enabled, "decision": why, "stack": stack.to_dict()}
    return (stack if enabled else None), report
