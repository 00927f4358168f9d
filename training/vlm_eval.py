"""`lensguard vlm eval`: the VLM against zero-shot CLIP and the active classifier on the same grouped split of a
project's human-labelled frames, the cascade's share and its combined verdicts, the VLM's frames/s; an HTML
report shows the frames where VLM and CLIP disagree, with the VLM's sentence. Results go to the registry.

Every verdict is taken at P(dirty) = 0.5: no threshold is fitted on the frames reported. The split is the
training jobs' validation split (same fraction and seed); the active classifier chose its early stopping and
threshold there, so its row is optimistic, and the report says so.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import numpy as np

from models.cascade import combine_with_vlm
from models.frames import ImageDecodeError
from models.registry import version_name
from models.verdict import Verdict
from models.vlm import VlmAnswer, serving_vlm
from serving.components import build_fetcher
from serving.vlm import vlm_frame
from settings import Settings, cascade_config, open_model_registry, vlm_config
from training.dataset import build_training_set
from training.export import export_project
from training.frames import task_image
from training.grouping import SplitError, grouped_split
from training.metrics import binary_metrics
from training.progress import JobProgress
from training.served import served_pipeline, served_scorer

EVAL_KIND = "vlm-eval"
THRESHOLD = 0.5


def run_vlm_eval(project_id: int, settings: Settings, progress: JobProgress, limit: int | None = None) -> dict:
    config = vlm_config(settings)
    if config is None:
        return {"status": "vlm_off", "detail": "LENSGUARD_VLM_MODEL is none"}
    explainer, status = serving_vlm(config)
    if explainer is None:
        return {"status": "vlm_off", "detail": status}
    cascade = cascade_config(settings)
    tags, tasks = export_project(project_id, settings, progress)
    pipeline = served_pipeline(settings)
    fetcher = build_fetcher(settings)
    data = build_training_set(tasks, tags, pipeline, fetcher, progress, thumbnail_size=160)
    if len(set(data.labels.tolist())) < 2:
        return {"status": "need_both_classes", "labelled": len(data.labels)}
    try:
        _, split = grouped_split(data.labels, data.groups, settings.val_fraction)
    except SplitError as exc:
        return {"status": "need_more_data", "detail": str(exc)}
    split = split[:limit] if limit else split
    examples = [data.examples[i] for i in split]
    labels = data.labels[split]
    images = fetcher.fetch_many([task_image(e.task, tags.image_key) for e in examples])
    if any(isinstance(image, Exception) for image in images):
        return {"status": "failed", "detail": "a labelled frame could not be fetched again"}

    score, classifier_name = served_scorer(pipeline, settings, project_id)
    served = score(images, tags.type_labels)
    p_clip = data.p_zero_shot[split]
    progress.stage(f"asking {explainer.version}", total=len(examples))
    frames = []
    for image in images:
        try:
            frames.append(vlm_frame(image, config.max_image_pixels, settings.max_image_pixels))
        except ImageDecodeError as exc:
            return {"status": "failed", "detail": str(exc)}
    started = time.perf_counter()
    answers: list[VlmAnswer] = explainer.explain(frames, tags.type_labels)
    seconds = time.perf_counter() - started
    progress.update(done=len(examples))

    parsed = np.array([a.parsed for a in answers])
    p_vlm = np.array([a.p_dirty if a.parsed else np.nan for a in answers])
    in_band = np.array([isinstance(v, Verdict) and cascade.in_band(v.uncertainty) for v in served])
    cascaded = [
        combine_with_vlm(v, a, cascade.rule) if band else v for v, a, band in zip(served, answers, in_band, strict=True)
    ]
    rows = {"zero-shot CLIP": binary_metrics(labels, p_clip, THRESHOLD)}
    if classifier_name:
        rows[f"served ({classifier_name} + zero-shot, {settings.combine})"] = binary_metrics(
            labels, np.array([v.p_dirty for v in served]), THRESHOLD
        )
    if parsed.any():
        rows[f"VLM {explainer.version} (parsed frames only)"] = binary_metrics(labels[parsed], p_vlm[parsed], THRESHOLD)
        rows["zero-shot CLIP on the same parsed frames"] = binary_metrics(labels[parsed], p_clip[parsed], THRESHOLD)
    rows[f"cascade {cascade.version}"] = binary_metrics(labels, np.array([v.p_dirty for v in cascaded]), THRESHOLD)
    summary = {
        "frames": len(examples),
        "dirty": int(labels.sum()),
        "vlm_parsed": int(parsed.sum()),
        "vlm_unparsed": int((~parsed).sum()),
        "cascade_share": float(in_band.mean()),
        "vlm_frames_per_second": len(examples) / seconds if seconds else None,
        "vlm": explainer.version,
        "vlm_weights": explainer.loaded.weights,
        "device": str(explainer.loaded.device),
        "cascade": cascade.version,
        "threshold": THRESHOLD,
    }
    disagreements = [
        {
            "task": examples[i].task["id"],
            "label": "dirty" if labels[i] else "clean",
            "clip": float(p_clip[i]),
            "vlm": answers[i].verdict.value,
            "confidence": answers[i].confidence,
            "sentence": answers[i].sentence,
            "regions": list(answers[i].regions),
            "thumbnail": data.thumbnails[split[i]] if data.thumbnails else None,
        }
        for i in range(len(examples))
        if answers[i].parsed and (p_vlm[i] >= THRESHOLD) != (p_clip[i] >= THRESHOLD)
    ]
    name = version_name(EVAL_KIND, json.dumps([summary, rows], sort_keys=True).encode())

    def write(directory: Path) -> dict:
        report = {"summary": summary, "rows": rows, "disagreements": [_without_image(d) for d in disagreements]}
        (directory / "report.json").write_text(json.dumps(report, indent=2))
        (directory / "report.html").write_text(render_report(project_id, summary, rows, disagreements))
        return {"project": project_id, "vlm": explainer.version}

    version = open_model_registry(settings).write_version(project_id, EVAL_KIND, name, write, summary)
    progress.log(f"report: {version.path / 'report.html'}")
    return (
        {"status": "done", "version": name, "report_html": str(version.path / "report.html")}
        | summary
        | {"rows": {row: {k: m[k] for k in ("n", "accuracy", "roc_auc")} for row, m in rows.items()}}
    )


def _without_image(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "thumbnail"}


def _figure(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_report(project_id: int, summary: dict, rows: dict[str, dict], disagreements: list[dict]) -> str:
    table = "".join(
        f"<tr><td class=name>{html.escape(name)}</td><td>{m['n']}</td><td>{_figure(m['accuracy'])}</td>"
        f"<td>{_figure(m['balanced_accuracy'])}</td><td>{_figure(m['roc_auc'])}</td></tr>"
        for name, m in rows.items()
    )
    frames = "".join(
        "<figure>"
        + (f"<img src='data:image/jpeg;base64,{base64.b64encode(d['thumbnail']).decode()}'>" if d["thumbnail"] else "")
        + f"<figcaption>task {d['task']}: labelled {d['label']}; CLIP P(dirty) {d['clip']:.2f}; "
        f"VLM {d['vlm']} ({d['confidence']:.2f})<br>{html.escape(d['sentence'])}"
        + (f"<br>where: {', '.join(d['regions'])}" if d["regions"] else "")
        + "</figcaption></figure>"
        for d in disagreements
    )
    facts = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in summary.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>VLM evaluation, project {project_id}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 24px; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }} td.name {{ text-align: left; }}
figure {{ display: inline-block; width: 220px; vertical-align: top; font-size: 12px; }} img {{ width: 200px; }}</style>
</head><body><h1>VLM evaluation, project {project_id}</h1><ul>{facts}</ul>
<p>Verdicts at P(dirty) = 0.5 on the training jobs' validation split (human labels only). The active classifier
chose its threshold and early stopping on this split: its row is optimistic.</p>
<table><tr><th>model</th><th>frames</th><th>accuracy</th><th>balanced accuracy</th><th>ROC-AUC</th></tr>{table}</table>
<h2>VLM and CLIP disagree ({len(disagreements)} frames)</h2>{frames or "<p>none</p>"}</body></html>"""
