"""The classifier kinds in the training pipeline: a probe on cached CLIP embeddings and a fine-tuned timm model,
trained on human soiling choices (plus optional zero-shot pseudo-labels), calibrated and thresholded on the
inner validation split; after every promotion decision, the best classifier on the frozen set serves."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from labelstudio.label_config import SoilingTags
from models.calibration import CalibratedClassifier, Calibration
from models.classifier import Classifier, LinearProbe
from models.kinds import CLASSIFIER_KINDS, load_version
from models.pipeline import SoilingPipeline
from models.registry import ModelVersion, Registry
from models.zero_shot import shared_zero_shot_scorer
from serving.components import SERVED_FILE, build_fetcher, zero_shot_config
from serving.resources import process_embedding_cache
from settings import Settings, open_model_registry
from training import learning_curve
from training.dataset import TrainingSet, build_training_set
from training.eval_set import EvalSplit
from training.finetune import finetune, finetune_config
from training.frames import project_frame_cache, trim_frame_cache
from training.loader import Picked
from training.locks import project_lock
from training.metrics import best_threshold, binary_metrics, metric_value, save_report_plot
from training.progress import JobProgress
from training.queue import connect
from training.vlm_answers import recorded_answers


def vlm_pseudo_labels(settings: Settings, tasks: list[dict]) -> dict[int, tuple[int, float]]:
    """task id -> (label, weight) for the VLM verdicts (recorded by VLM jobs) at least as confident as the setting."""
    projects = {task.get("project") for task in tasks} - {None}
    answers = {}
    for project in projects:
        answers |= recorded_answers(connect(settings.redis_url), project)
    return {
        task: (int(answer["verdict"] == "dirty"), settings.vlm_pseudo_weight)
        for task, answer in answers.items()
        if answer["confidence"] >= settings.vlm_pseudo_min_confidence
    }


MIN_CALIBRATION_FRAMES = 20
MIN_CALIBRATION_PER_CLASS = 5


class ClassifierTrainer:
    headline = ("roc_auc", "balanced_accuracy", "accuracy")

    def __init__(self, kind: str, project_id: int, settings: Settings):
        self.kind = kind
        self.project_id = project_id
        self.settings = settings
        self.metric = settings.promotion_metric
        self.encoder = ""

    def _needs_pixels(self) -> bool:
        """Pixels for a fine-tune, or to score an active fine-tune when the served classifier is re-decided."""
        if CLASSIFIER_KINDS[self.kind].needs == "pixels":
            return True
        registry = open_model_registry(self.settings)
        return "finetune" in self.settings.serve_kinds and registry.active(self.project_id, "finetune") is not None

    def dataset(self, tags: SoilingTags, tasks: list[dict], progress: JobProgress) -> TrainingSet | dict:
        settings = self.settings
        scorer = shared_zero_shot_scorer(zero_shot_config(settings))
        self.encoder = scorer.encoder_identity
        pipeline = SoilingPipeline(scorer, process_embedding_cache(settings), settings.max_image_pixels)
        pseudo = (settings.pseudo_low, settings.pseudo_high, settings.pseudo_weight) if settings.pseudo_labels else None
        pixel_size = settings.finetune_image_size if self._needs_pixels() else None
        cache = project_frame_cache(settings, self.project_id)
        vlm_pseudo = vlm_pseudo_labels(settings, tasks) if settings.vlm_pseudo_labels else None
        data = build_training_set(
            tasks,
            tags,
            pipeline,
            build_fetcher(settings),
            progress,
            pseudo,
            pixel_size,
            vlm_pseudo_labels=vlm_pseudo,
            frame_cache=cache,
        )
        if data.pixels is not None:
            trim_frame_cache(cache, data.pixels.paths, settings)
        labels = data.labels
        data.summary |= {"labelled": len(labels), "dirty": int(labels.sum()), "clean": int((1 - labels).sum())}
        progress.log(f"dataset: {data.summary}")
        if len(set(labels.tolist())) < 2:
            progress.log("need both classes: label at least one clean and one dirty frame")
            return {"status": "need_both_classes", "dataset": data.summary}
        return data

    def fit(self, data: TrainingSet, train: np.ndarray, val: np.ndarray, progress: JobProgress) -> Classifier:
        if self.kind == "probe":
            progress.stage("training the linear probe", total=1)
            model = LinearProbe.fit(data.embeddings[train], data.labels[train], self.encoder, data.weights[train])
            progress.update(done=1)
            return model
        config = finetune_config(self.settings)
        return finetune(data.pixels, data.labels, data.weights, train, val, config, progress)

    def calibrate(self, model: Classifier, data: TrainingSet, val: np.ndarray) -> CalibratedClassifier:
        """Platt scaling and the threshold (max balanced accuracy, or the target recall) on the inner split."""
        labels, raw = data.labels[val], self.predict(model, data, val)
        counts = np.bincount(labels, minlength=2)
        # Platt scaling on a handful of frames flattens every probability towards one value (and every score to
        # zero): below this size the raw probabilities are kept and only the threshold is chosen.
        enough = len(labels) >= MIN_CALIBRATION_FRAMES and counts.min() >= MIN_CALIBRATION_PER_CLASS
        calibration = Calibration.fit(raw, labels) if enough else Calibration()
        target = self.settings.threshold_target_recall
        threshold = best_threshold(labels, calibration.calibrated(raw), target) if len(set(labels)) == 2 else 0.5
        return CalibratedClassifier(model, calibration.with_threshold(threshold))

    def stack(self, model: CalibratedClassifier, data: TrainingSet, val, evaluation, progress) -> tuple:
        return model, {}

    def predict(self, model: Classifier, data: TrainingSet, frames: np.ndarray) -> np.ndarray:
        if model.needs == "embeddings":
            return model.predict_proba(data.embeddings[frames])
        if data.pixels is None:
            raise ValueError(f"{model.kind} reads pixels, which this run did not load")
        return model.predict_proba(Picked(data.pixels, frames))  # read a batch at a time

    def baselines(self, data: TrainingSet, frames: np.ndarray) -> dict[str, np.ndarray]:
        return {"zero-shot": data.p_zero_shot[frames]}

    def metrics(self, data: TrainingSet, frames: np.ndarray, p_dirty: np.ndarray) -> dict:
        """At the served threshold (0.5 after calibration and recentring): nothing is tuned on these frames."""
        return binary_metrics(data.labels[frames], p_dirty, 0.5)

    def score(self, data: TrainingSet, frames: np.ndarray, p_dirty: np.ndarray) -> float | None:
        return metric_value(self.metric, data.labels[frames], p_dirty)

    def write(
        self, model: CalibratedClassifier, directory: Path, data: TrainingSet, frames, predicted: dict, metrics: dict
    ) -> dict:
        config = model.save(directory)
        save_report_plot(directory / "report.png", data.labels[frames], predicted, metrics)
        return {**config, "threshold": model.calibration.threshold}

    def recorded(
        self,
        registry: Registry,
        version: ModelVersion,
        data: TrainingSet,
        score: float | None,
        promoted: bool,
        progress: JobProgress,
    ) -> None:
        human = [e.task for e in data.examples if e.source == "human"]
        curve = learning_curve.record(registry, version.project, version.kind, version.name, human, score, promoted)
        progress.log(f"learning curve: {curve['labels']} labels (+{curve['added']}, picked by {curve['added_by']})")

    def promoted(self, registry: Registry, data: TrainingSet, split: EvalSplit, progress: JobProgress) -> None:
        """The classifier that serves is the best active one on the frozen set, whatever its kind."""
        frames = split.evaluation
        scores: dict[str, dict] = {}
        for kind in self.settings.serve_kinds:
            version = registry.active(self.project_id, kind)
            if kind not in CLASSIFIER_KINDS or version is None:
                continue
            try:
                p = self.predict(load_version(version, self.settings.device), data, frames)
            except Exception as exc:
                progress.log(f"{version.name} not comparable on the evaluation set: {exc}")
                continue
            scores[kind] = {"version": version.name, self.metric: self.metrics(data, frames, p)[self.metric]}
        if not scores:
            return
        best = max(scores, key=lambda k: (scores[k][self.metric] or 0, -self.settings.serve_kinds.index(k)))
        record = {
            "classifier": {"kind": best, **scores[best]},
            "candidates": scores,
            "metric": self.metric,
            "eval_set_version": split.version,
            "decided_at": datetime.now(UTC).isoformat(),
        }
        with project_lock(self.settings.redis_url, f"serve:{self.project_id}"):
            registry.write_project_file(self.project_id, SERVED_FILE, record)
        progress.log(f"serving {scores[best]['version']} ({best}): best on the evaluation set of {sorted(scores)}")
