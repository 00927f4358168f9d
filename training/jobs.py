"""Training jobs: the RQ entry point and the steps from Label Studio annotations to a promoted version."""

from __future__ import annotations

import logging

from rq import get_current_job

from backend.jobs import release_pending
from backend.label_config import SoilingTags, parse_soiling_config
from backend.serving import build_fetcher, label_studio_client, zero_shot_config
from backend.settings import Settings, get_settings
from models.classifier import CLASSIFIER_KINDS, MODEL_KINDS, LinearProbe, load_classifier
from models.embedding_cache import EmbeddingCache
from models.pipeline import SoilingPipeline
from models.registry import ModelRegistry, version_name
from models.zero_shot import shared_zero_shot_scorer
from training import learning_curve
from training.dataset import TrainingSet, build_training_set
from training.finetune import FinetuneConfig, finetune
from training.grouping import SplitError, grouped_split
from training.metrics import best_threshold, binary_metrics, save_report_plot
from training.progress import JobProgress
from training.segment_job import run_segmenter_training

log = logging.getLogger(__name__)


def train_job(project_id: int, kind: str, reason: str = "manual") -> dict:
    """What a worker runs (see backend.jobs.TRAIN_FUNCTION)."""
    job = get_current_job()
    if job is not None:
        release_pending(job.connection, project_id, kind, job.id)
    return run_training(project_id, kind, get_settings(), JobProgress(), reason)


def export_project(project_id: int, settings: Settings, progress: JobProgress) -> tuple[SoilingTags, list[dict]]:
    """The project's tags and its tasks with annotations, through Label Studio's API."""
    client = label_studio_client(settings, "annotations cannot be exported")
    tags = parse_soiling_config(client.project(project_id)["label_config"])
    progress.stage("exporting annotations from Label Studio")
    tasks = client.tasks(project_id)
    progress.log(f"{len(tasks)} tasks exported")
    return tags, tasks


def _fit(kind: str, data: TrainingSet, train, val, settings: Settings, encoder: str, progress: JobProgress):
    labels = data.labels
    if kind == "probe":
        progress.stage("training the linear probe", total=1)
        model = LinearProbe.fit(data.embeddings[train], labels[train], encoder, data.weights[train])
        progress.update(done=1)
        return model
    config = FinetuneConfig(
        arch=settings.finetune_arch,
        pretrained=settings.finetune_pretrained,
        image_size=settings.finetune_image_size,
        epochs=settings.finetune_epochs,
        batch_size=settings.finetune_batch_size,
        patience=settings.finetune_patience,
        lr=settings.finetune_lr,
        device=settings.device,
    )
    return finetune(data.pixels, labels, data.weights, train, val, config, progress)


def _inputs(model, data: TrainingSet, indices) -> object:
    if model.needs == "embeddings":
        return data.embeddings[indices]
    return [data.pixels[i] for i in indices]


def run_training(
    project_id: int,
    kind: str,
    settings: Settings,
    progress: JobProgress,
    reason: str = "manual",
) -> dict:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_KINDS)}")
    progress.log(f"training {kind} for project {project_id} ({reason})")
    tags, tasks = export_project(project_id, settings, progress)
    if kind == "segmenter":
        return run_segmenter_training(tags, tasks, settings, progress, project_id, reason)
    scorer = shared_zero_shot_scorer(zero_shot_config(settings))
    pipeline = SoilingPipeline(scorer, EmbeddingCache(settings.embedding_cache_path), settings.max_image_pixels)
    pseudo = (settings.pseudo_low, settings.pseudo_high, settings.pseudo_weight) if settings.pseudo_labels else None
    pixel_size = settings.finetune_image_size if CLASSIFIER_KINDS[kind].needs == "pixels" else None
    data = build_training_set(tasks, tags, pipeline, build_fetcher(settings), progress, pseudo, pixel_size)
    labels = data.labels
    summary = {**data.report, "labelled": len(labels), "dirty": int(labels.sum()), "clean": int((1 - labels).sum())}
    progress.log(f"dataset: {summary}")
    if len(set(labels.tolist())) < 2:
        progress.log("need both classes: label at least one clean and one dirty frame")
        return {"status": "need_both_classes", "dataset": summary}
    try:
        train, val = grouped_split(labels, data.groups, settings.val_fraction)
    except SplitError as exc:
        progress.log(str(exc))
        return {"status": "need_more_data", "detail": str(exc), "dataset": summary}
    summary |= {"train": len(train), "validation": len(val), "groups": len(set(data.groups))}

    model = _fit(kind, data, train, val, settings, scorer.encoder_identity, progress)
    progress.stage("evaluating on the validation split")
    y_val = labels[val]
    target = settings.threshold_target_recall
    curves = {kind: model.predict_proba(_inputs(model, data, val)), "zero-shot": data.p_zero_shot[val]}
    registry = ModelRegistry(settings.registry_path)
    active = registry.active(project_id, kind)
    if active is not None:
        try:
            curves["active"] = load_classifier(active, settings.device).predict_proba(_inputs(model, data, val))
        except Exception as exc:  # an incompatible or unreadable active version loses to any new one
            progress.log(f"active version {active.name} could not be evaluated: {exc}")
    metrics = {
        name: binary_metrics(y_val, p, best_threshold(y_val, p, target) if target else None)
        for name, p in curves.items()
    }
    metric = settings.promotion_metric
    new_score = metrics[kind][metric]
    active_score = metrics.get("active", {}).get(metric)
    promote = active is None or "active" not in metrics or (new_score or 0) > (active_score or 0)

    name = version_name(kind, model.digest())
    document = {
        "validation": metrics,
        "dataset": summary,
        "promotion": {
            "metric": metric,
            "new": new_score,
            "active": active_score,
            "active_version": getattr(active, "name", None),
        },
        "reason": reason,
    }

    def write(directory):
        config = model.save(directory)
        save_report_plot(directory / "report.png", y_val, curves, metrics)
        return {**config, "project": project_id, "threshold": metrics[kind]["threshold"]}

    version = registry.write_version(project_id, kind, name, write, document)
    curve = learning_curve.record(
        version.path.parent, name, [e.task for e in data.examples if e.source == "human"], new_score, promote
    )
    progress.log(f"learning curve: {curve['labels']} labels (+{curve['added']}, picked by {curve['added_by']})")
    if promote:
        registry.promote(version, f"{metric} {new_score} > active {active_score}" if active else "first version")
        progress.log(f"promoted {name}: {metric} {new_score} (active was {active_score})")
    else:
        progress.log(f"kept {name} unpromoted: {metric} {new_score} <= active {active_score}")
    return {
        "status": "promoted" if promote else "kept",
        "version": name,
        "metrics": {k: {m: v[m] for m in ("roc_auc", "balanced_accuracy", "accuracy")} for k, v in metrics.items()},
        "dataset": summary,
    }
