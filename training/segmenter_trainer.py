"""The `segmenter` kind in the training pipeline: brush masks from Label Studio -> frames and class masks ->
segmenter trained on the training part (plus optional synthetic soiling) -> IoU and tile coverage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from labelstudio.label_config import SoilingTags
from labelstudio.masks import frame_mask
from labelstudio.tasks import latest_result
from models.frame_cache import CachedArrays
from models.frames import ImageDecodeError, image_size, resize_frame, resize_mask
from models.registry import ModelVersion, Registry
from models.segmenter import NUM_CLASSES, Segmenter
from serving.components import build_fetcher
from settings import Settings
from training.coverage_verdict import choose_coverage_stack, predicted_coverage, served_p_dirty
from training.frames import fetch_in_chunks, project_frame_cache, task_image, trim_frame_cache
from training.grouping import assign_groups, dhash
from training.loader import Joined, in_chunks
from training.progress import JobProgress
from training.segment import (
    VAL_CHUNK,
    SegmenterConfig,
    confusion_of,
    mean_iou,
    segmentation_metrics,
    segmenter_config,
    train_segmenter,
)
from training.served import served_pipeline, served_scorer
from training.synthetic import make_frames

USABLE = ("masked", "clean")


@dataclass
class MaskedFrames:
    pixels: Sequence[np.ndarray]  # frames squashed to the configured image size (CachedArrays: read on access)
    masks: Sequence[np.ndarray]  # class ids at the same size
    tasks: list[dict]
    groups: list[str]
    summary: dict = field(default_factory=dict)

    @cached_property
    def labels(self) -> np.ndarray:
        """Frames with any soiling: the grouped split keeps soiled frames on both sides."""
        return np.array([int(m.any()) for m in self.masks])

    @property
    def task_ids(self) -> list[int]:
        return [task["id"] for task in self.tasks]

    @property
    def human(self) -> np.ndarray:
        return np.ones(len(self.tasks), dtype=bool)


class SegmenterTrainer:
    kind = "segmenter"
    metric = "miou"
    headline = ("miou", "pixel_accuracy", "tile_coverage_mae", "tile_accuracy")

    def __init__(self, project_id: int, settings: Settings):
        self.project_id = project_id
        self.settings = settings
        self.config: SegmenterConfig = segmenter_config(settings)
        self._confusions: dict[tuple[int, int], np.ndarray] = {}
        self.tags: SoilingTags | None = None

    def dataset(self, tags: SoilingTags, tasks: list[dict], progress: JobProgress) -> MaskedFrames | dict:
        self.tags = tags
        if not tags.brush:
            return {"status": "no_brush_tag", "detail": "the labeling config has no BrushLabels for dirt masks"}
        framed = [(task, frame_mask(latest_result(task), tags)) for task in tasks]
        counts: dict[str, int] = {}
        problems = []
        for task, fm in framed:
            counts[fm.status] = counts.get(fm.status, 0) + 1
            problems += [f"task {task['id']}: {p}" for p in fm.problems]
        usable = [(t, fm) for t, fm in framed if fm.status in USABLE]
        masked = sum(fm.status == "masked" for _, fm in usable)
        summary = {"frames": counts, "problems": problems[:20], "masked": masked}
        progress.log(f"masks: {counts}; {len(problems)} problems")
        minimum = self.settings.segmenter_min_masked_frames
        if masked < minimum:
            return {
                "status": "need_more_masks",
                "dataset": summary,
                "detail": f"{masked} masked frames, need {minimum}",
            }

        size = self.config.image_size
        cache = project_frame_cache(self.settings, self.project_id)
        frames, masks, kept, hashes = [], [], [], []
        progress.stage("fetching masked frames", total=len(usable))
        fetcher = build_fetcher(self.settings)
        for chunk in fetch_in_chunks(fetcher, usable, lambda u: task_image(u[0], tags.image_key), progress):
            for (task, fm), image in chunk:
                if isinstance(image, Exception):
                    problems.append(f"task {task['id']}: {image}")
                    continue
                try:
                    width, height = image_size(image)
                    frame = cache.frame(image, size, self.settings.max_image_pixels)
                except (ImageDecodeError, OSError) as exc:
                    problems.append(f"task {task['id']}: {exc}")
                    continue
                if fm.mask is not None and fm.mask.shape != (height, width):
                    problems.append(
                        f"task {task['id']}: mask {fm.mask.shape[::-1]} does not match image {(width, height)}; skipped"
                    )
                    continue
                full = fm.mask if fm.mask is not None else np.zeros((height, width), np.uint8)
                masks.append(cache.mask(full, size))
                frames.append(frame)
                kept.append(task)
                hashes.append(dhash(image))
        summary["skipped"] = len(problems)
        trim_frame_cache(cache, frames + masks, self.settings)
        return MaskedFrames(CachedArrays(frames), CachedArrays(masks), kept, assign_groups(kept, hashes), summary)

    def fit(self, data: MaskedFrames, train: np.ndarray, val: np.ndarray, progress: JobProgress) -> Segmenter:
        config = self.config
        pixels, masks = data.pixels, data.masks
        if config.synthetic_frames:  # cold start: synthetic soiling joins the training part, never validation
            synthetic = make_frames(
                config.synthetic_frames, *config.image_size, 1.0, seed=len(pixels), style=config.synthetic_style
            )
            pixels = Joined(pixels, [np.asarray(frame.image) for frame in synthetic])
            masks = Joined(masks, [frame.mask for frame in synthetic])
            train = np.concatenate([train, np.arange(len(data.pixels), len(pixels))])
        data.summary |= {"train": len(train), "synthetic": config.synthetic_frames}
        return train_segmenter(pixels, masks, train, val, config, progress)

    def calibrate(self, model: Segmenter, data: MaskedFrames, val: np.ndarray) -> Segmenter:
        return model

    def stack(
        self, model: Segmenter, data: MaskedFrames, val: np.ndarray, evaluation: np.ndarray, progress: JobProgress
    ) -> tuple[Segmenter, dict]:
        """The coverage verdict (training/coverage_verdict.py): the served P(dirty) of the validation and
        evaluation frames next to this segmenter's coverage of them; the stacker rides with the version when
        enabled."""
        band = self.settings.coverage_verdict_band
        if band <= 0:
            return model, {"coverage_verdict": {"enabled": False, "decision": "LENSGUARD_COVERAGE_VERDICT_BAND is 0"}}
        frames = np.concatenate([val, evaluation]).astype(int)
        progress.stage("coverage as verdict evidence: served P(dirty) and coverage", total=len(frames))
        settings, tags = self.settings, self.tags
        score, classifier = served_scorer(served_pipeline(settings), settings, self.project_id)
        fetched = fetch_in_chunks(
            build_fetcher(settings), [data.tasks[i] for i in frames], lambda t: task_image(t, tags.image_key), progress
        )
        p_dirty = np.concatenate(
            [np.zeros(0)] + [served_p_dirty(score, [im for _, im in chunk], tags.type_labels) for chunk in fetched]
        )
        coverage = predicted_coverage(model, data.pixels, frames)
        scored = ~np.isnan(p_dirty)
        sides = (slice(0, len(val)), slice(len(val), None))
        parts = [(p_dirty[s][scored[s]], coverage[s][scored[s]], data.labels[frames[s]][scored[s]]) for s in sides]
        eval_groups = [data.groups[i] for i in evaluation[scored[len(val) :]]]
        chosen, report = choose_coverage_stack(
            parts[0], parts[1], eval_groups, band, settings.promotion_resamples, settings.promotion_confidence
        )
        report |= {"served_verdict": classifier or "zero-shot CLIP", "unscored_frames": int((~scored).sum())}
        progress.log(f"coverage verdict: {report['decision']}")
        return (model.with_options(coverage_stack=chosen) if chosen else model), {"coverage_verdict": report}

    def predict(self, model: Segmenter, data: MaskedFrames, val: np.ndarray) -> list[np.ndarray]:
        """Masks at the configured size, whatever size the model (e.g. an older active one) reads."""
        size, predicted = self.config.image_size, []
        for chunk in in_chunks(data.pixels, val, VAL_CHUNK):
            frames = (
                chunk if tuple(model.image_size) == tuple(size) else [resize_frame(f, model.image_size) for f in chunk]
            )
            predicted += [resize_mask(mask, size) for mask in model.predict_masks(frames)]
        return predicted

    def baselines(self, data: MaskedFrames, val: np.ndarray) -> dict:
        return {}

    def metrics(self, data: MaskedFrames, val: np.ndarray, predicted: list[np.ndarray]) -> dict:
        return segmentation_metrics([data.masks[i] for i in val], predicted, self.config.grid)

    def score(self, data: MaskedFrames, frames: np.ndarray, predicted: list[np.ndarray]) -> float | None:
        """Mean IoU from per-frame confusion matrices, each computed once (bootstraps resample them)."""
        total = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for frame, mask in zip(frames, predicted, strict=True):
            key = (int(frame), id(mask))
            if key not in self._confusions:
                self._confusions[key] = confusion_of(data.masks[frame], mask)
            total += self._confusions[key]
        return mean_iou(total)

    def write(
        self, model: Segmenter, directory: Path, data: MaskedFrames, val: np.ndarray, predicted: dict, metrics: dict
    ) -> dict:
        shown = val[:6]
        save_overlays(
            directory / "report.png",
            [data.pixels[i] for i in shown],
            [data.masks[i] for i in shown],
            predicted[self.kind][: len(shown)],
        )
        return {**model.save(directory), "grid": list(self.config.grid)}

    def recorded(
        self, registry: Registry, version: ModelVersion, data, score, promoted: bool, progress: JobProgress
    ) -> None:
        return None

    def promoted(self, registry, data, evaluation, progress: JobProgress) -> None:
        return None


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
