"""One-file HTML report (images embedded) and a JSON with every figure, for a prompt evaluation."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from training.prompt_eval import Candidate

WORST_FRAMES = 6
TABLE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; max-width: 520px; }
tr.recommended { background: #e8f5e9; } .frames img { height: 96px; margin: 2px; border: 3px solid #ccc; }
.frames figure { display: inline-block; margin: 4px; font-size: 11px; text-align: center; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plots(candidates: list[Candidate], labels_report: np.ndarray) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = {}
    for model in dict.fromkeys(c.model for c in candidates):
        shown = [c for c in candidates if c.model == model and c.kind in ("set", "ensemble")]
        fig, axis = plt.subplots(figsize=(5, 4))
        for candidate in shown:
            fpr, tpr, _ = roc_curve(labels_report, candidate.p_report)
            axis.plot(fpr, tpr, label=f"{candidate.name[:40]} ({candidate.metrics['roc_auc']:.3f})")
        axis.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, report split: {model}")
        axis.legend(fontsize=7, loc="lower right")
        images[f"roc:{model}"] = _png(fig)
        plt.close(fig)
    return images


def _confusion(matrix: list[list[int]]) -> str:
    (tn, fp), (fn, tp) = matrix
    return f"TN {tn} FP {fp}<br>FN {fn} TP {tp}"


def _row(candidate: Candidate, recommended: Candidate | None) -> str:
    m = candidate.metrics
    css = ' class="recommended"' if candidate is recommended else ""

    def f(value):
        return "–" if value is None else f"{value:.3f}"

    return (
        f"<tr{css}><td class='name'>{html.escape(candidate.name)}</td><td>{candidate.kind}</td>"
        f"<td>{html.escape(candidate.model)}</td><td>{f(m['roc_auc'])}</td><td>{f(m['pr_auc'])}</td>"
        f"<td>{f(m['accuracy'])}</td><td>{f(m['balanced_accuracy'])}</td><td>{candidate.threshold:.3f}</td>"
        f"<td>{f(m['precision'])}</td><td>{f(m['recall'])}</td><td>{_confusion(m['confusion_matrix'])}</td></tr>"
    )


def _worst_frames(candidate: Candidate, labels: np.ndarray, thumbnails: list[bytes], task_ids: list) -> str:
    errors = np.abs(labels - candidate.p_report)
    figures = []
    for i in np.argsort(-errors)[:WORST_FRAMES]:
        colour = "#d32f2f" if labels[i] else "#1976d2"
        src = "data:image/jpeg;base64," + base64.b64encode(thumbnails[i]).decode()
        figures.append(
            f"<figure><img src='{src}' style='border-color:{colour}'><figcaption>task {task_ids[i]}: "
            f"{'dirty' if labels[i] else 'clean'}, P(dirty) {candidate.p_report[i]:.2f}</figcaption></figure>"
        )
    return f"<h3>{html.escape(candidate.name)} ({candidate.model})</h3><div class='frames'>{''.join(figures)}</div>"


def write_report(
    out_dir: Path,
    project: int,
    candidates: list[Candidate],
    labels_report: np.ndarray,
    thumbnails: list[bytes] | None,
    task_ids: list,
    recommended: Candidate | None,
    extra: dict,
    final_dir: Path | str | None = None,
) -> tuple[Path, Path]:
    """`final_dir`: where the report lives once its version is written (out_dir may be a staging folder)."""
    final_dir = final_dir or out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    ranked = sorted(candidates, key=lambda c: -(c.metrics.get("roc_auc") or 0))
    document = {
        "project": project,
        **extra,
        "recommended": recommended.summary() if recommended else None,
        "report_frames": {"task_ids": list(task_ids), "labels": labels_report.astype(int).tolist()},
        "rows": [{**c.summary(), "p_dirty_report": np.round(c.p_report, 6).tolist()} for c in ranked],
    }
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(document, indent=2))
    plots = _plots(candidates, labels_report)
    rows = "".join(_row(c, recommended) for c in ranked)
    worst = ""
    if thumbnails:
        worst = "".join(
            _worst_frames(c, labels_report, thumbnails, task_ids) for c in ranked if c.kind in ("set", "ensemble")
        )
    recommendation = (
        f"<p><b>Recommended:</b> {html.escape(recommended.name)} on {html.escape(recommended.model)} "
        f"(report ROC-AUC {recommended.metrics['roc_auc']:.3f}, threshold {recommended.threshold:.3f}); "
        f"serve it with <code>lensguard prompts use {final_dir}/recommended-prompts.json --project {project}"
        "</code>.</p>"
        if recommended
        else ""
    )
    split = extra.get("split", {})
    title = f"lensguard prompt report, project {project}"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{TABLE_STYLE}</style></head><body>
<h1>Prompt validation, project {project}</h1>
<p>{split.get("select", "?")} labelled frames chose ensembles and thresholds; the figures below come from the other
{split.get("report", "?")} frames ({split.get("report_dirty", "?")} dirty). No group of near-duplicate frames is on
both sides.</p>
{recommendation}
<table><tr><th>candidate</th><th>kind</th><th>model</th><th>ROC-AUC</th><th>PR-AUC</th><th>accuracy</th>
<th>balanced acc.</th><th>threshold</th><th>precision</th><th>recall</th><th>confusion</th></tr>{rows}</table>
{"".join(f"<img src='{src}'>" for src in plots.values())}
<h2>Frames each prompt set gets most wrong (report split)</h2>{worst}
</body></html>"""
    html_path = out_dir / "report.html"
    html_path.write_text(body)
    return html_path, json_path
