"""The `segmenter` training job: brush masks from Label Studio -> grouped split -> train -> registry/promotion."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from backend.serving import build_fetcher
from backend.settings import Settings
from models.classifier import load_classifier
from models.pipeline import ImageDecodeError, decode_image
from models.registry import ModelRegistry, version_name
from training.grouping import SplitError, assign_groups, dhash, grouped_split
from training.masks import frame_mask
from training.progress import JobProgress
from training.segment import SegmenterConfig, segmentation_metrics, train_segmenter
from training.synthetic import make_frames

USABLE = ("masked", "clean")


def latest_result(task: dict) -> list[dict]:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not annotations:
        return []
    latest = max(annotations, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)))
    return latest.get("result") or []


def segmenter_config(settings: Settings) -> SegmenterConfig:
    width, _, height = settings.segmenter_image_size.partition("x")
    rows, _, cols = settings.tile_grid.partition("x")
    tile_cols, _, tile_rows = settings.segmenter_tiles.partition("x")
    return SegmenterConfig(
        arch=settings.segmenter_arch,
        encoder=settings.segmenter_encoder,
        encoder_weights=settings.segmenter_encoder_weights,
        image_size=(int(width), int(height)),
        epochs=settings.segmenter_epochs,
        batch_size=settings.segmenter_batch_size,
        lr=settings.segmenter_lr,
        patience=settings.segmenter_patience,
        cutmix=settings.segmenter_cutmix,
        grid=(int(rows), int(cols)),
        tiles=(int(tile_cols), int(tile_rows)),
        synthetic_frames=settings.segmenter_synthetic_frames,
        device=settings.device,
    )


def run_segmenter_training(
    tags, tasks: list[dict], settings: Settings, progress: JobProgress, project_id: int, reason: str
) -> dict:
    if not tags.brush:
        return {"status": "no_brush_tag", "detail": "the labeling config has no BrushLabels for dirt masks"}
    config = segmenter_config(settings)
    framed = [(task, frame_mask(latest_result(task), tags)) for task in tasks]
    counts: dict[str, int] = {}
    problems = []
    for task, fm in framed:
        counts[fm.status] = counts.get(fm.status, 0) + 1
        problems += [f"task {task['id']}: {p}" for p in fm.problems]
    usable = [(t, fm) for t, fm in framed if fm.status in USABLE]
    masked = sum(fm.status == "masked" for _, fm in usable)
    report = {"frames": counts, "problems": problems[:20], "masked": masked}
    progress.log(f"masks: {counts}; {len(problems)} problems")
    if masked < settings.segmenter_min_masked_frames:
        return {
            "status": "need_more_masks",
            "dataset": report,
            "detail": f"{masked} masked frames, need {settings.segmenter_min_masked_frames}",
        }

    fetcher = build_fetcher(settings)
    progress.stage("fetching masked frames", total=len(usable))
    pixels, masks, hashes, kept = [], [], [], []
    for start in range(0, len(usable), 32):
        chunk = usable[start : start + 32]
        fetched = fetcher.fetch_many([(t.get("data") or {}).get(tags.image_key) or "" for t, _ in chunk])
        for (task, fm), data in zip(chunk, fetched, strict=True):
            if isinstance(data, Exception):
                problems.append(f"task {task['id']}: {data}")
                continue
            try:
                size = Image.open(io.BytesIO(data)).size
                frame = decode_image(data, config.image_size, settings.max_image_pixels)
            except (ImageDecodeError, OSError) as exc:
                problems.append(f"task {task['id']}: {exc}")
                continue
            if fm.mask is not None and fm.mask.shape != (size[1], size[0]):
                problems.append(f"task {task['id']}: mask {fm.mask.shape[::-1]} does not match image {size}; skipped")
                continue
            full = fm.mask if fm.mask is not None else np.zeros((size[1], size[0]), np.uint8)
            masks.append(np.asarray(Image.fromarray(full).resize(config.image_size, Image.Resampling.NEAREST)))
            pixels.append(frame)
            hashes.append(dhash(data))
            kept.append(task)
        progress.update(advance=len(chunk))
    labels = np.array([int(m.any()) for m in masks])
    groups = assign_groups(kept, hashes)
    try:
        train, val = grouped_split(labels, groups, settings.val_fraction)
    except SplitError as exc:
        return {"status": "need_more_data", "detail": str(exc), "dataset": report}
    if config.synthetic_frames:  # cold start: synthetic soiling joins the training part, never validation
        for frame in make_frames(config.synthetic_frames, *config.image_size, dirty_fraction=1.0, seed=len(kept)):
            pixels.append(np.asarray(frame.image))
            masks.append(frame.mask)
        train = np.concatenate([train, np.arange(len(kept), len(pixels))])
    report |= {
        "train": len(train),
        "validation": len(val),
        "skipped": len(problems),
        "synthetic": config.synthetic_frames,
    }
    segmenter = train_segmenter(pixels, masks, train, val, config, progress)
    progress.stage("evaluating on the validation split")
    val_masks = [masks[i] for i in val]
    val_pixels = [pixels[i] for i in val]
    metrics = {"segmenter": segmentation_metrics(val_masks, list(segmenter.predict_masks(val_pixels)), config.grid)}
    registry = ModelRegistry(settings.registry_path)
    active = registry.active(project_id, "segmenter")
    if active is not None:
        try:
            previous = load_classifier(active, settings.device)
            resized = [decode_image_array(p, previous.image_size) for p in val_pixels]
            predicted = [
                np.asarray(Image.fromarray(m).resize(config.image_size, Image.Resampling.NEAREST))
                for m in previous.predict_masks(resized)
            ]
            metrics["active"] = segmentation_metrics(val_masks, predicted, config.grid)
        except Exception as exc:
            progress.log(f"active version {active.name} could not be evaluated: {exc}")
    new, old = metrics["segmenter"]["miou"] or 0, (metrics.get("active") or {}).get("miou")
    promote = active is None or "active" not in metrics or new > (old or 0)
    name = version_name("segmenter", segmenter.digest())

    def write(directory):
        saved = segmenter.save(directory)
        save_overlays(directory / "report.png", val_pixels[:6], val_masks[:6], segmenter.predict_masks(val_pixels[:6]))
        return {**saved, "project": project_id, "grid": list(config.grid)}

    document = {
        "validation": metrics,
        "dataset": report,
        "promotion": {"metric": "miou", "new": new, "active": old},
        "reason": reason,
    }
    version = registry.write_version(project_id, "segmenter", name, write, document)
    if promote:
        registry.promote(version, f"miou {new} > active {old}" if active else "first version")
    progress.log(f"{'promoted' if promote else 'kept'} {name}: mIoU {new:.3f} (active was {old})")
    return {
        "status": "promoted" if promote else "kept",
        "version": name,
        "metrics": {
            k: {m: v[m] for m in ("miou", "pixel_accuracy", "tile_coverage_mae", "tile_accuracy")}
            for k, v in metrics.items()
        },
        "dataset": report,
    }


def decode_image_array(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(tuple(size), Image.Resampling.BICUBIC))


def save_overlays(path, frames, true_masks, predicted) -> None:
    """Frames with true (left) and predicted (right) dirt drawn in red, one row each."""
    rows = []
    for frame, truth, guess in zip(frames, true_masks, predicted, strict=True):
        tinted = []
        for mask in (truth, guess):
            overlay = frame.astype(np.float32).copy()
            overlay[mask > 0] = 0.5 * overlay[mask > 0] + 0.5 * np.array([255, 0, 0])
            tinted.append(overlay.astype(np.uint8))
        rows.append(np.concatenate(tinted, axis=1))
    if rows:
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)
