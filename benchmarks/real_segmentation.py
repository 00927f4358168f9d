"""Segmenter on real dirt masks, trained through Label Studio, judged on a grouped held-out part; and the
synthetic generator judged next to real dirty frames.

The dev set's masks (../shared/data/nornickel-dev, skipped when absent) are imported as brush annotations of
one class (`opaque` by default) for the training part, the clean frames get `clean`; Label Studio's "Start
training" runs the webhook -> queue -> worker path. The promoted segmenter is then applied to the held-out
frames; per-frame and mean dirt IoU and the tile-coverage error are printed, and a PNG report shows predicted
masks over held-out frames, and synthetic soiled frames beside real dirty ones. A probe is trained too, so the
segmenter job fits its coverage stacker over a served classifier; the verdict's held-out ROC-AUC is printed
without and with the segmenter's coverage as evidence (the stacker the job fitted, enabled or not).

    .venv/bin/python benchmarks/real_segmentation.py [--encoder resnet18] [--size 256x160] [--epochs 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._common import settings_of
from benchmarks._stack import (
    DEV_SET,
    SOILING_XML,
    dev_set_rows,
    dev_set_split,
    import_dev_frames,
    local_stack,
    start_training_and_wait,
)
from labelstudio.brush import mask_to_rle
from labelstudio.label_config import parse_soiling_config
from models.coverage_stack import CoverageStack, in_band
from models.frames import decode_image
from models.kinds import load_version
from models.registry import ModelRegistry
from training.coverage_verdict import served_p_dirty
from training.metrics import roc_auc
from training.segment import segmentation_metrics
from training.served import served_pipeline, served_scorer
from training.synthetic import make_frames

THUMB = (320, 180)


def annotation(row: dict, label: str) -> list[dict]:
    result = [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [row["label"]]}}]
    if row["label"] == "dirty":
        mask = np.asarray(Image.open(DEV_SET / row["mask"])) > 127
        height, width = mask.shape
        result.append(
            {
                "from_name": "dirt_mask",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
            }
        )
    return result


def thumbnail(frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    image = Image.fromarray(frame).resize(THUMB)
    pixels = np.asarray(image, np.float32)
    if mask is not None:
        small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(THUMB, Image.Resampling.NEAREST)) > 0
        pixels[small] = 0.5 * pixels[small] + 0.5 * np.array([255, 0, 0])
    return pixels.astype(np.uint8)


def verdict_with_coverage(stack, project: int, rows, held_out, labels, segmenter, report: dict) -> None:
    """Held-out ROC-AUC of the served verdict without and with the segmenter's coverage (the job's stacker)."""
    print(f"coverage verdict in the job: {report}")
    if "stack" not in report:
        return
    settings = settings_of(stack.env)
    score, served_by = served_scorer(served_pipeline(settings), settings, project)
    images = [(DEV_SET / rows[i]["image"]).read_bytes() for i in held_out]
    p_dirty = served_p_dirty(score, images, parse_soiling_config(SOILING_XML).type_labels)
    pixels = [decode_image(data, segmenter.image_size, 10**9) for data in images]
    coverage = segmenter.frame_coverages(*segmenter.predict_with_coverage(pixels, (4, 4)))
    coverage_stack, band, y = CoverageStack.from_dict(report["stack"]), settings.coverage_verdict_band, labels[held_out]
    in_the_band = coverage_stack.apply_in_band(p_dirty, coverage, band)
    print(
        f"held-out verdict ROC-AUC ({served_by or 'zero-shot CLIP'}; {len(y)} frames, {int(y.sum())} dirty): "
        f"without coverage {roc_auc(y, p_dirty):.3f}, with coverage in the band {band} "
        f"({int(in_band(p_dirty, band).sum())} frames) {roc_auc(y, in_the_band):.3f}, "
        f"with coverage on every frame {roc_auc(y, coverage_stack.apply(p_dirty, coverage)):.3f}, "
        f"coverage alone {roc_auc(y, 1 - coverage[:, 0]):.3f}; enabled by the job: {report['enabled']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", default="256x160")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--label", default="opaque", choices=["transparent", "semi-transparent", "opaque"])
    parser.add_argument("--report", type=Path, default=Path("real_segmentation.png"))
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    args = parser.parse_args()
    rows = dev_set_rows()
    if rows is None:
        return
    labels, train, held_out = dev_set_split(rows)
    settings = {
        "clip_model": "lensguard-tiny-ViT",
        "clip_pretrained": "none",
        "auto_train_kinds": "probe,segmenter",
        "segmenter_encoder": args.encoder,
        "segmenter_encoder_weights": "none",
        "segmenter_image_size": args.size,
        "segmenter_epochs": str(args.epochs),
        "segmenter_patience": "10",
        "segmenter_min_masked_frames": "5",
    }
    with tempfile.TemporaryDirectory() as state_dir, local_stack(Path(state_dir), args.redis, settings) as stack:
        client = stack.client
        project = client.sdk.projects.create(title="nornickel-dev masks", label_config=SOILING_XML).id
        stack.connect(project)
        tasks = import_dev_frames(client, project, rows)
        for i in train:
            client.annotate(tasks[i]["id"], annotation(rows[i], args.label))
        jobs = start_training_and_wait(stack, project, kinds=2)
        [job] = [j for j in jobs if j["kind"] == "segmenter"]
        if job["status"] != "finished" or job["result"]["status"] not in ("promoted", "kept"):
            sys.exit(f"segmenter training did not produce a version: {job}")
        print(f"trained {job['result']['version']}: validation {job['result']['metrics']}")
        version = ModelRegistry(Path(stack.env["LENSGUARD_DATA_DIR"]) / "models").active(project, "segmenter")
        segmenter = load_version(version, "cpu")
        verdict_with_coverage(stack, project, rows, held_out, labels, segmenter, job["result"]["coverage_verdict"])

    frames, truths, guesses = [], [], []
    for i in held_out:
        data = (DEV_SET / rows[i]["image"]).read_bytes()
        truth = np.asarray(Image.open(DEV_SET / rows[i]["mask"])) > 127
        small = segmenter.predict_masks([decode_image(data, segmenter.image_size, 10**9)])[0]
        guess = np.asarray(Image.fromarray(small).resize(truth.shape[::-1], Image.Resampling.NEAREST)) > 0
        frames.append(np.asarray(Image.open(DEV_SET / rows[i]["image"]).convert("RGB")))
        truths.append(truth.astype(np.uint8) * 3)
        guesses.append(guess.astype(np.uint8) * 3)
    metrics = segmentation_metrics(truths, guesses)
    print(f"\nheld-out part: {len(held_out)} frames, {int(labels[held_out].sum())} dirty")
    dirty_ious = []
    for i, truth, guess in zip(held_out, truths, guesses, strict=True):
        if truth.any():
            dirty_ious.append(((truth > 0) & (guess > 0)).sum() / ((truth > 0) | (guess > 0)).sum())
            print(f"  {rows[i]['image']:<40} dirt IoU {dirty_ious[-1]:.3f}")
    clean_flagged = sum(bool(g.any()) for t, g in zip(truths, guesses, strict=True) if not t.any())
    print(
        f"mean dirt IoU over dirty frames {np.mean(dirty_ious):.3f}; clean frames with predicted dirt: "
        f"{clean_flagged} of {sum(not t.any() for t in truths)}"
    )
    print(f"mean dirt IoU per frame {metrics['dirt_iou_per_frame_mean']:.3f} (clean frames: 1 if left clean)")
    print(
        f"mIoU {metrics['miou']:.3f}, pixel accuracy {metrics['pixel_accuracy']:.3f}, "
        f"tile coverage MAE {metrics['tile_coverage_mae']:.4f}, tile accuracy {metrics['tile_accuracy']:.3f}"
    )

    dirty = [k for k, t in enumerate(truths) if t.any()][:4]
    real_rows = [
        np.concatenate([thumbnail(frames[k], truths[k] > 0), thumbnail(frames[k], guesses[k] > 0)], 1) for k in dirty
    ]
    synthetic = make_frames(len(dirty) or 1, 1280, 720, dirty_fraction=1.0, seed=4, style="realistic")
    real_dirty = [thumbnail(frames[k]) for k in dirty] or [thumbnail(np.asarray(synthetic[0].image))]
    side_by_side = [
        np.concatenate([thumbnail(np.asarray(s.image)), r], 1) for s, r in zip(synthetic, real_dirty, strict=False)
    ]
    panel = np.concatenate(real_rows + side_by_side, 0) if real_rows else np.concatenate(side_by_side, 0)
    Image.fromarray(panel).save(args.report)
    print(
        f"report: {args.report.resolve()} (rows 1-{len(real_rows)}: held-out truth | prediction; "
        "then synthetic soiling | real dirty frame)"
    )


if __name__ == "__main__":
    main()
