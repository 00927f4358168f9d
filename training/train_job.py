"""One training pipeline for every kind: export -> dataset -> grouped split -> fit -> evaluate next to the active
version -> write the version atomically -> promote if better. Each kind plugs in a `Trainer`."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
from rq import get_current_job

from labelstudio.label_config import SoilingTags
from models.kinds import MODEL_KINDS, load_version
from models.registry import ModelRegistry, version_name
from settings import Settings, get_settings
from training.export import export_project
from training.grouping import SplitError, grouped_split
from training.progress import JobProgress
from training.queue import release_pending

log = logging.getLogger(__name__)


class TrainingData(Protocol):
    labels: np.ndarray  # what the grouped split stratifies on (1 dirty, 0 clean)
    groups: list[str]  # near-duplicate groups: no group on both sides of the split
    summary: dict  # reported in the job's result and the version's metrics.json


class Trainer(Protocol):
    """What a model kind plugs into the pipeline."""

    kind: str
    metric: str  # the validation figure that decides promotion (higher is better)
    headline: tuple[str, ...]  # the figures the job's result shows per scorer

    def dataset(self, tags: SoilingTags, tasks: list[dict], progress: JobProgress) -> TrainingData | dict:
        """The training data, or a job result saying why there is none (e.g. need_both_classes)."""

    def fit(self, data: Any, train: np.ndarray, val: np.ndarray, progress: JobProgress) -> Any: ...

    def predict(self, model: Any, data: Any, val: np.ndarray) -> Any:
        """Predictions of any model of this kind (the new one or the active one) on the validation frames."""

    def baselines(self, data: Any, val: np.ndarray) -> dict[str, Any]:
        """Other scorers' predictions shown next to the model's (zero-shot CLIP for classifiers)."""

    def metrics(self, data: Any, val: np.ndarray, predicted: Any) -> dict: ...

    def write(self, model: Any, directory, data: Any, val: np.ndarray, predicted: dict, metrics: dict) -> dict:
        """Save the model and its report into `directory`; returns the version's config."""

    def recorded(self, version, data: Any, score: float | None, promoted: bool, progress: JobProgress) -> None:
        """After the version is written: the loop's record (learning curve)."""


def create_trainer(kind: str, settings: Settings) -> Trainer:
    from training.classifier_trainers import ClassifierTrainer
    from training.segmenter_trainer import SegmenterTrainer

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_KINDS)}")
    return SegmenterTrainer(settings) if kind == "segmenter" else ClassifierTrainer(kind, settings)


def train_job(project_id: int, kind: str, reason: str = "manual") -> dict:
    """What a worker runs (see training.queue.TRAIN_FUNCTION)."""
    job = get_current_job()
    if job is not None:
        release_pending(job.connection, project_id, kind, job.id)
    return run_training(project_id, kind, get_settings(), JobProgress(), reason)


def run_training(project_id: int, kind: str, settings: Settings, progress: JobProgress, reason: str = "manual") -> dict:
    trainer = create_trainer(kind, settings)  # an unknown kind fails before Label Studio is asked
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
    trainer = trainer or create_trainer(kind, settings)
    data = trainer.dataset(tags, tasks, progress)
    if isinstance(data, dict):
        return data
    try:
        train, val = grouped_split(data.labels, data.groups, settings.val_fraction)
    except SplitError as exc:
        progress.log(str(exc))
        return {"status": "need_more_data", "detail": str(exc), "dataset": data.summary}
    data.summary |= {"train": len(train), "validation": len(val), "groups": len(set(data.groups))}

    model = trainer.fit(data, train, val, progress)
    progress.stage("evaluating on the validation split")
    predicted = {kind: trainer.predict(model, data, val), **trainer.baselines(data, val)}
    registry = ModelRegistry(settings.registry_path)
    active = registry.active(project_id, kind)
    if active is not None:
        try:
            predicted["active"] = trainer.predict(load_version(active, settings.device), data, val)
        except Exception as exc:  # an incompatible or unreadable active version loses to any new one
            progress.log(f"active version {active.name} could not be evaluated: {exc}")
    metrics = {name: trainer.metrics(data, val, p) for name, p in predicted.items()}
    metric = trainer.metric
    new_score = metrics[kind][metric]
    active_score = metrics.get("active", {}).get(metric)
    promote = "active" not in metrics or (new_score or 0) > (active_score or 0)

    name = version_name(kind, model.digest())
    document = {
        "validation": metrics,
        "dataset": data.summary,
        "promotion": {
            "metric": metric,
            "new": new_score,
            "active": active_score,
            "active_version": getattr(active, "name", None),
        },
        "reason": reason,
    }

    def write(directory) -> dict:
        return {**trainer.write(model, directory, data, val, predicted, metrics), "project": project_id}

    version = registry.write_version(project_id, kind, name, write, document)
    trainer.recorded(version, data, new_score, promote, progress)
    if promote:
        registry.promote(version, f"{metric} {new_score} > active {active_score}" if active else "first version")
        progress.log(f"promoted {name}: {metric} {new_score} (active was {active_score})")
    else:
        progress.log(f"kept {name} unpromoted: {metric} {new_score} <= active {active_score}")
    return {
        "status": "promoted" if promote else "kept",
        "version": name,
        "metrics": {scorer: {m: figures[m] for m in trainer.headline} for scorer, figures in metrics.items()},
        "dataset": data.summary,
    }
