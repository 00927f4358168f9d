"""`lensguard prompts eval` and its queued job: prompt sets, single prompts, greedy ensembles and the active
classifiers, on the same grouped split of a project's labelled frames; results go to the registry."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rq import get_current_job

from models.kinds import CLASSIFIER_KINDS, load_version
from models.pipeline import SoilingPipeline
from models.registry import ModelVersion, version_name
from models.zero_shot import PromptSet, ZeroShotConfig, load_prompt_set, shared_zero_shot_scorer
from models.zero_shot.prompts import PROMPTS_FILE, PROMPTS_KIND, parse_prompt_set
from serving.components import build_fetcher, zero_shot_config
from serving.resources import process_embedding_cache
from settings import Settings, get_settings, open_model_registry
from training.dataset import TrainingSet, build_training_set
from training.eval_set import EVAL_SET_FILE
from training.export import export_project
from training.frames import project_frame_cache
from training.grouping import SplitError, grouped_split
from training.loader import Picked
from training.metrics import binary_metrics
from training.progress import JobProgress
from training.prompt_eval import Candidate, candidates_for_model, evaluate, greedy_ensemble, p_dirty
from training.prompt_report import write_report
from training.rescore import enqueue_rescore

EVAL_KIND = "prompt-eval"
PROMPT_EVAL_FUNCTION = "training.prompt_job.prompt_eval_job"


def prompt_eval_job(project_id: int, prompt_sets: list[dict], models: list[str], target_recall: float | None) -> dict:
    """What a worker runs; prompt sets travel as JSON so workers need no access to the caller's files."""
    if get_current_job() is None:
        raise RuntimeError("prompt_eval_job runs on a worker; call run_prompt_eval directly instead")
    return run_prompt_eval(project_id, prompt_sets, models, get_settings(), JobProgress(), target_recall)


def model_config(spec: str, settings: Settings) -> ZeroShotConfig:
    """'ViT-B-16' (the configured weights), 'ViT-B-16:openai', 'ViT-B-16:/path/ckpt.pt' or 'hf-hub:org/repo'."""
    base = zero_shot_config(settings)
    if spec.startswith("hf-hub:"):
        return replace(base, model_name=spec, pretrained=None)
    name, _, pretrained = spec.partition(":")
    if not pretrained:
        pretrained = base.pretrained if name == base.model_name else "openai"
    return replace(base, model_name=name, pretrained=None if pretrained == "none" else pretrained)


def selection_and_report(labels: np.ndarray, groups: list[str], frozen: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Two grouped halves; the project's frozen evaluation frames all go to the report half, where the active
    classifiers (which never trained on them) can be scored next to the prompts."""
    frozen_at = np.flatnonzero(frozen)
    if not len(frozen_at):
        return grouped_split(labels, groups, val_fraction=0.5, seed=0)
    rest = np.flatnonzero(~np.asarray(frozen, dtype=bool))
    try:
        select, report = grouped_split(labels[rest], [groups[i] for i in rest], val_fraction=0.5, seed=0)
    except SplitError:
        if len(set(labels[rest])) < 2:
            raise
        return rest, frozen_at
    return rest[select], np.concatenate([rest[report], frozen_at])


def _align(data: TrainingSet, task_ids: list) -> np.ndarray:
    position = {e.task["id"]: i for i, e in enumerate(data.examples)}
    return np.array([position[t] for t in task_ids])


def run_prompt_eval(
    project_id: int,
    prompt_sets: list[dict],
    models: list[str],
    settings: Settings,
    progress: JobProgress,
    target_recall: float | None = None,
) -> dict:
    sets = [parse_prompt_set(data, data.get("name", f"set{i}")) for i, data in enumerate(prompt_sets)]
    sets = sets or [load_prompt_set(settings.prompt_set)]
    serving_spec = f"{settings.clip_model}:{settings.clip_pretrained or 'none'}"
    models = models or [serving_spec]
    tags, tasks = export_project(project_id, settings, progress)
    fetcher = build_fetcher(settings)
    registry = open_model_registry(settings)
    active = [v for kind in CLASSIFIER_KINDS if (v := registry.active(project_id, kind)) is not None]

    per_model: list[tuple[str, object, TrainingSet]] = []
    for index, spec in enumerate(models):
        config = model_config(spec, settings)
        scorer = shared_zero_shot_scorer(config)
        pipeline = SoilingPipeline(scorer, process_embedding_cache(settings), settings.max_image_pixels)
        serving = config.model_name == settings.clip_model and config.pretrained == settings.clip_pretrained
        pixel_size = settings.finetune_image_size if serving and any(v.kind == "finetune" for v in active) else None
        progress.log(f"model {spec}: {scorer.clip.identity}")
        data = build_training_set(
            tasks,
            tags,
            pipeline,
            fetcher,
            progress,
            pixel_size=pixel_size,
            thumbnail_size=128 if index == 0 else None,
            frame_cache=project_frame_cache(settings, project_id),
        )
        per_model.append((spec, scorer, data))

    common = set.intersection(*({e.task["id"] for e in data.examples} for _, _, data in per_model))
    first = per_model[0][2]
    task_ids = [e.task["id"] for e in first.examples if e.task["id"] in common]
    rows = _align(first, task_ids)
    labels, groups = first.labels[rows], [first.groups[i] for i in rows]
    if len(set(labels.tolist())) < 2:
        return {"status": "need_both_classes", "labelled": len(labels)}
    evaluation = set((registry.read_project_file(project_id, EVAL_SET_FILE) or {}).get("tasks", []))
    try:
        select, report = selection_and_report(labels, groups, [t in evaluation for t in task_ids])
    except SplitError as exc:
        return {"status": "need_more_data", "detail": str(exc), "labelled": len(labels)}

    progress.stage("scoring prompts", total=len(per_model))
    candidates: list[Candidate] = []
    for spec, scorer, data in per_model:
        embeddings = data.embeddings[_align(data, task_ids)]
        shown = f"{spec} (RANDOM weights)" if scorer.clip.random_weights else spec
        found = candidates_for_model(scorer, sets, shown)
        clean_pool = [p for s in sets for p in s.classes["clean"]]
        dirty_pool = [p for s in sets for p in s.classes["dirty"]]
        clean, dirty, trace = greedy_ensemble(scorer, embeddings[select], labels[select], clean_pool, dirty_pool)
        progress.log(f"{spec}: greedy ensemble of {len(clean)} clean and {len(dirty)} dirty prompts ({trace[-1]})")
        found.append(Candidate("greedy ensemble", "ensemble", shown, clean, dirty))
        for candidate in found:
            scores = p_dirty(scorer, embeddings, candidate.clean, candidate.dirty)
            candidate.p_select, candidate.p_report = scores[select], scores[report]
            candidates.append(evaluate(candidate, labels, select, report, target_recall))
        if spec == serving_spec:
            split_parts = (labels, select, report, target_recall)
            candidates += _classifier_rows(
                active, data, task_ids, split_parts, shown, scorer.encoder_identity, settings, evaluation, progress
            )
        progress.update(advance=1)

    prompt_rows = [c for c in candidates if c.kind in ("set", "ensemble")]
    recommended = max(prompt_rows, key=lambda c: (c.metrics["roc_auc"] or 0, c.kind == "set"))
    base = sets[0]
    split = {
        "select": len(select),
        "report": len(report),
        "report_dirty": int(labels[report].sum()),
        "groups": len(set(groups)),
    }
    extra = {"split": split, "models": models, "prompt_sets": [s.tag for s in sets], "target_recall": target_recall}
    name = version_name(EVAL_KIND, json.dumps([c.summary() for c in candidates], sort_keys=True).encode())
    thumbnails = [first.thumbnails[i] for i in rows[report]] if first.thumbnails else None

    def write(directory: Path) -> dict:
        write_report(
            directory,
            project_id,
            candidates,
            labels[report],
            thumbnails,
            [task_ids[i] for i in report],
            recommended,
            extra,
            final_dir=registry.version_location(project_id, EVAL_KIND, name),
        )
        (directory / "recommended-prompts.json").write_text(
            json.dumps(recommended.as_prompt_set(base).to_json(), indent=2)
        )
        return {"project": project_id, "recommended": recommended.name, "model": recommended.model}

    version = registry.write_version(
        project_id, EVAL_KIND, name, write, {"split": split, "recommended": recommended.summary()}
    )
    progress.log(f"report: {version.path / 'report.html'}")
    return {
        "status": "done",
        "version": name,
        "report_html": str(version.path / "report.html"),
        "report_json": str(version.path / "report.json"),
        "recommended_prompts": str(version.path / "recommended-prompts.json"),
        "recommended": {
            "name": recommended.name,
            "model": recommended.model,
            "roc_auc": recommended.metrics["roc_auc"],
        },
    }


def _classifier_rows(
    active: list[ModelVersion],
    data: TrainingSet,
    task_ids: list,
    split_parts: tuple,
    model: str,
    encoder: str,
    settings: Settings,
    evaluation: set[int],
    progress: JobProgress,
) -> list[Candidate]:
    """The project's active classifiers, with figures only from report-half frames of the frozen evaluation set
    (frames no classifier trained, early-stopped, thresholded or calibrated on)."""
    labels, select, report, target_recall = split_parts
    honest = np.array([i for i in report if task_ids[i] in evaluation], dtype=int)
    if not len(honest) or len(set(labels[honest])) < 2:
        progress.log("classifier rows left out: the report half holds too few frames of the frozen evaluation set")
        return []
    rows = _align(data, task_ids)
    found = []
    for version in active:
        classifier = load_version(version, settings.device)
        if classifier.needs == "embeddings":
            if version.config.get("encoder") != encoder:
                continue
            scores = classifier.predict_proba(data.embeddings[rows])
        elif data.pixels is not None:
            scores = classifier.predict_proba(Picked(data.pixels, rows))
        else:
            continue
        name = f"active {version.kind} {version.name} (frozen evaluation set, {len(honest)} frames)"
        candidate = Candidate(name, "classifier", model)
        candidate.p_select, candidate.p_report = scores[select], scores[honest]
        candidate = evaluate(candidate, labels, select, honest, target_recall)
        candidate.threshold = 0.5  # calibrated and thresholded when trained; nothing is tuned on these frames
        candidate.metrics = binary_metrics(labels[honest], candidate.p_report, 0.5)
        candidate.report_tasks = [task_ids[i] for i in honest]
        found.append(candidate)
    return found


def use_prompt_set(project_id: int, path: Path, settings: Settings) -> ModelVersion:
    """Make a prompt set (with its threshold) the one /predict serves for the project."""
    prompt_set: PromptSet = load_prompt_set(path)
    registry = open_model_registry(settings)
    name = version_name(PROMPTS_KIND, prompt_set.digest.encode())

    def write(directory: Path) -> dict:
        (directory / PROMPTS_FILE).write_text(json.dumps(prompt_set.to_json(), indent=2))
        return {"project": project_id, "prompt_set": prompt_set.tag, "source": str(path)}

    version = registry.write_version(project_id, PROMPTS_KIND, name, write, {})
    registry.promote(version, f"chosen by hand from {path}")
    enqueue_rescore(project_id, f"promoted {name}", settings)
    return version
