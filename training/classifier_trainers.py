"""The classifier kinds in the training pipeline: a probe on cached CLIP embeddings and a fine-tuned timm model,
trained on human soiling choices (plus optional zero-shot pseudo-labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelstudio.label_config import SoilingTags
from models.classifier import Classifier, LinearProbe
from models.embedding_cache import EmbeddingCache
from models.kinds import CLASSIFIER_KINDS
from models.pipeline import SoilingPipeline
from models.registry import ModelVersion
from models.zero_shot import shared_zero_shot_scorer
from serving.components import build_fetcher, zero_shot_config
from settings import Settings
from training import learning_curve
from training.dataset import TrainingSet, build_training_set
from training.finetune import finetune, finetune_config
from training.metrics import best_threshold, binary_metrics, save_report_plot
from training.progress import JobProgress


class ClassifierTrainer:
    headline = ("roc_auc", "balanced_accuracy", "accuracy")

    def __init__(self, kind: str, settings: Settings):
        self.kind = kind
        self.settings = settings
        self.metric = settings.promotion_metric
        self.encoder = ""

    def dataset(self, tags: SoilingTags, tasks: list[dict], progress: JobProgress) -> TrainingSet | dict:
        settings = self.settings
        scorer = shared_zero_shot_scorer(zero_shot_config(settings))
        self.encoder = scorer.encoder_identity
        pipeline = SoilingPipeline(scorer, EmbeddingCache(settings.embedding_cache_path), settings.max_image_pixels)
        pseudo = (settings.pseudo_low, settings.pseudo_high, settings.pseudo_weight) if settings.pseudo_labels else None
        pixel_size = settings.finetune_image_size if CLASSIFIER_KINDS[self.kind].needs == "pixels" else None
        data = build_training_set(tasks, tags, pipeline, build_fetcher(settings), progress, pseudo, pixel_size)
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

    def predict(self, model: Classifier, data: TrainingSet, val: np.ndarray) -> np.ndarray:
        if model.needs == "embeddings":
            return model.predict_proba(data.embeddings[val])
        return model.predict_proba([data.pixels[i] for i in val])

    def baselines(self, data: TrainingSet, val: np.ndarray) -> dict[str, np.ndarray]:
        return {"zero-shot": data.p_zero_shot[val]}

    def metrics(self, data: TrainingSet, val: np.ndarray, p_dirty: np.ndarray) -> dict:
        labels, target = data.labels[val], self.settings.threshold_target_recall
        return binary_metrics(labels, p_dirty, best_threshold(labels, p_dirty, target) if target else None)

    def write(
        self, model: Classifier, directory: Path, data: TrainingSet, val: np.ndarray, predicted: dict, metrics: dict
    ) -> dict:
        config = model.save(directory)
        save_report_plot(directory / "report.png", data.labels[val], predicted, metrics)
        return {**config, "threshold": metrics[self.kind]["threshold"]}

    def recorded(
        self, version: ModelVersion, data: TrainingSet, score: float | None, promoted: bool, progress: JobProgress
    ) -> None:
        human = [e.task for e in data.examples if e.source == "human"]
        curve = learning_curve.record(version.path.parent, version.name, human, score, promoted)
        progress.log(f"learning curve: {curve['labels']} labels (+{curve['added']}, picked by {curve['added_by']})")
