"""One training pipeline for every kind: export -> dataset -> frozen evaluation set + grouped inner split -> fit
-> calibrate on the inner validation split -> evaluate next to the active version on the frozen set -> write the
version atomically -> promote when better beyond noise. Each kind plugs in a `Trainer`."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
from rq import get_current_job

from labelstudio.label_config import SoilingTags
from models.kinds import MODEL_KINDS, load_version
from models.registry import ModelVersion, PromotionConflict, Registry, version_name
from models.weights import WeightsUnavailableError
from settings import Settings, get_settings, open_model_registry
from training.eval_set import EvalSetError, EvalSplit, update_eval_set
from training.export import export_project
from training.grouping import SplitError, grouped_split
from training.locks import project_lock
from training.progress import JobProgress
from training.promotion import bootstrap_difference, decide
from training.queue import release_pending
from training.rescore import enqueue_rescore

log = logging.getLogger(__name__)


class TrainingData(Protocol):
    labels: np.ndarray  # what the grouped splits stratify on (1 dirty, 0 clean)
    groups: list[str]  # near-duplicate groups: no group on two sides of a split
    task_ids: list[int]
    human: np.ndarray  # which frames carry a human label (only those are ever evaluated on)
    summary: dict  # reported in the job's result and the version's metrics.json


class Trainer(Protocol):
    """What a model kind plugs into the pipeline."""

    kind: str
    metric: str  # the figure that decides promotion on the frozen evaluation set (higher is better)
    headline: tuple[str, ...]  # the figures the job's result shows per scorer

    def dataset(self, tags: SoilingTags, tasks: list[dict], progress: JobProgress) -> TrainingData | dict:
        """The training data, or a job result saying why there is none (e.g. need_both_classes)."""

    def fit(self, data: Any, train: np.ndarray, val: np.ndarray, progress: JobProgress) -> Any: ...

    def calibrate(self, model: Any, data: Any, val: np.ndarray) -> Any:
        """The model as it will be served, calibrated and thresholded on the inner validation split."""

    def stack(
        self, model: Any, data: Any, val: np.ndarray, evaluation: np.ndarray, progress: JobProgress
    ) -> tuple[Any, dict]:
        """Evidence the model adds to another verdict (the segmenter's coverage to the frame verdict), fitted on
        the inner validation split and judged on the frozen set: the model as it will be written, and what the
        job's result and metrics report about it ({} for nothing)."""

    def predict(self, model: Any, data: Any, frames: np.ndarray) -> Any:
        """Predictions of any model of this kind (the new one or an active one) for these frames."""

    def baselines(self, data: Any, frames: np.ndarray) -> dict[str, Any]:
        """Other scorers' predictions shown next to the model's (zero-shot CLIP for classifiers)."""

    def metrics(self, data: Any, frames: np.ndarray, predicted: Any) -> dict: ...

    def score(self, data: Any, frames: np.ndarray, predicted: Any) -> float | None:
        """`metrics(...)[metric]` alone, fast: the promotion bootstrap computes it a thousand times."""

    def write(self, model: Any, directory, data: Any, frames: np.ndarray, predicted: dict, metrics: dict) -> dict:
        """Save the model and its report into `directory`; returns the version's config."""

    def recorded(
        self, registry: Registry, version, data: Any, score: float | None, promoted: bool, progress: JobProgress
    ) -> None:
        """After the promotion decision: the loop's record (learning curve)."""

    def promoted(self, registry: Registry, data: Any, evaluation: EvalSplit, progress: JobProgress) -> None:
        """After every promotion decision: what serves (e.g. the best classifier across kinds)."""


def create_trainer(kind: str, project_id: int, settings: Settings) -> Trainer:
    from training.classifier_trainers import ClassifierTrainer
    from training.segmenter_trainer import SegmenterTrainer

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_KINDS)}")
    if kind == "segmenter":
        return SegmenterTrainer(project_id, settings)
    return ClassifierTrainer(kind, project_id, settings)


def train_job(project_id: int, kind: str, reason: str = "manual") -> dict:
    """What a worker runs (see training.queue.TRAIN_FUNCTION)."""
    job = get_current_job()
    if job is not None:
        release_pending(job.connection, project_id, kind, job.id)
    try:
        return run_training(project_id, kind, get_settings(), JobProgress(), reason)
    except WeightsUnavailableError:
        if job is not None:  # a job that cannot succeed is never retried
            job.retries_left = 0
            job.save()
        raise


def take(predicted: Any, positions: np.ndarray) -> Any:
    return predicted[positions] if isinstance(predicted, np.ndarray) else [predicted[i] for i in positions]


def human_only(data: TrainingData, indices: np.ndarray) -> np.ndarray:
    """The frames among `indices` with a human label (pseudo-labelled frames train, never judge)."""
    return indices[data.human[indices]]


def run_training(project_id: int, kind: str, settings: Settings, progress: JobProgress, reason: str = "manual") -> dict:
    trainer = create_trainer(kind, project_id, settings)  # an unknown kind fails before Label Studio is asked
    progress.log(f"training {kind} for project {project_id} ({reason})")
    tags, tasks = export_project(project_id, settings, progress)
    return train_on_tasks(project_id, kind, tags, tasks, settings, progress, reason, trainer)


def train_on_tasks(
    project_id: int,
    kind: str,
    tags: SoilingTags,
    tasks: list[dict],
    settings: Settings,
    progress: JobProgress,
    reason: str = "manual",
    trainer: Trainer | None = None,
) -> dict:
    """The pipeline after the export: dataset -> split -> fit -> evaluate -> write -> promote."""
    trainer = trainer or create_trainer(kind, project_id, settings)
    data = trainer.dataset(tags, tasks, progress)
    if isinstance(data, dict):
        return data
    registry = open_model_registry(settings)
    try:
        with project_lock(settings.redis_url, f"eval-set:{project_id}"):
            split = update_eval_set(
                registry,
                project_id,
                data.task_ids,
                data.groups,
                data.labels,
                data.human,
                settings.eval_fraction,
                settings.eval_min_groups,
            )
        pool = split.pool
        inner_train, inner_val = grouped_split(data.labels[pool], [data.groups[i] for i in pool], settings.val_fraction)
    except (EvalSetError, SplitError) as exc:
        progress.log(str(exc))
        return {"status": "need_more_data", "detail": str(exc), "dataset": data.summary}
    train, val, evaluation = pool[inner_train], pool[inner_val], split.evaluation
    eval_groups = [data.groups[i] for i in evaluation]
    judged = human_only(data, val)  # pseudo-labelled frames train, never early-stop, threshold or calibrate
    if len(judged) < len(val):
        val = judged
        if len(set(data.labels[val].tolist())) < 2:
            progress.log("without its pseudo-labelled frames the inner validation split lacks a class")
            return {"status": "need_more_data", "detail": "validation needs human labels of both classes"}
    data.summary |= {"train": len(train), "validation": len(val), "groups": len(set(data.groups))}
    data.summary["evaluation"] = {
        "eval_set_version": split.version,
        "frames": len(evaluation),
        "groups": split.groups,
        "dirty": int(data.labels[evaluation].sum()),
        "added_by_this_run": split.added,
    }
    progress.log(f"frozen evaluation set v{split.version}: {data.summary['evaluation']}")

    model = trainer.calibrate(trainer.fit(data, train, val, progress), data, val)
    model, stacked = trainer.stack(model, data, val, evaluation, progress)
    progress.stage("evaluating on the frozen evaluation set")
    predicted = {kind: trainer.predict(model, data, evaluation), **trainer.baselines(data, evaluation)}
    metric = trainer.metric

    def score(name: str, positions: np.ndarray) -> float | None:
        return trainer.score(data, evaluation[positions], take(predicted[name], positions))

    def difference(positions: np.ndarray) -> float | None:
        new, old = score(kind, positions), score("active", positions)
        return None if new is None or old is None else new - old

    with project_lock(settings.redis_url, f"promote:{project_id}:{kind}"):
        active = registry.active(project_id, kind)  # read under the lock: another worker may just have promoted
        if active is not None:
            try:
                predicted["active"] = trainer.predict(load_version(active, settings.device), data, evaluation)
            except Exception as exc:  # an incompatible or unreadable active version loses to any new one
                progress.log(f"active version {active.name} could not be evaluated: {exc}")
        metrics = {name: trainer.metrics(data, evaluation, p) for name, p in predicted.items()}
        new_score, active_score = metrics[kind][metric], metrics.get("active", {}).get(metric)
        compared = (
            bootstrap_difference(eval_groups, difference, settings.promotion_resamples, settings.promotion_confidence)
            if "active" in predicted
            else None
        )
        promote, why = decide(new_score, active.name if "active" in predicted else None, compared)
        random_init = bool(getattr(model, "random_init", False))
        name = version_name(kind, model.digest()) + ("-randominit" if random_init else "")
        if registry.has_version(project_id, kind, name):  # the same model, trained twice at once
            progress.log(f"{name} exists already (identical model from a concurrent run): nothing to write")
            return {"status": "kept", "version": name, "detail": "identical to an existing version"}
        document = {
            "evaluation": metrics,
            "dataset": data.summary,
            "promotion": {
                "metric": metric,
                "new": new_score,
                "active": active_score,
                "active_version": getattr(active, "name", None),
                "difference": compared,
                "decision": why,
            },
            "reason": reason,
            **stacked,
        }

        def write(directory) -> dict:
            return {**trainer.write(model, directory, data, evaluation, predicted, metrics), "project": project_id}

        version: ModelVersion = registry.write_version(project_id, kind, name, write, document)
        if promote:
            try:  # a compare-and-swap too: the lock covers this registry's workers, the swap any writer
                registry.promote(version, why, expected=getattr(active, "name", None))
            except PromotionConflict as exc:
                promote, why = False, str(exc)
        trainer.recorded(registry, version, data, new_score, promote, progress)
    progress.log(f"{'promoted' if promote else 'kept'} {name}: {metric} {new_score} (active {active_score}); {why}")
    trainer.promoted(registry, data, split, progress)
    if promote:  # the queue follows the model: re-score unlabelled tasks, then switch the project's model_version
        enqueue_rescore(project_id, f"promoted {name}", settings)
    return {
        "status": "promoted" if promote else "kept",
        "version": name,
        "metrics": {scorer: {m: figures[m] for m in trainer.headline} for scorer, figures in metrics.items()},
        "promotion": document["promotion"],
        "dataset": data.summary,
        "weights": "random initialisation (pretrained weights unavailable)" if random_init else "as configured",
        **stacked,
    }
