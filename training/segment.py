"""Segmenter training: joint image/mask augmentation, mask-aware cutmix, class-balanced loss, early stopping on
validation mean IoU; and the segmentation metrics (per-class IoU, pixel accuracy, tile coverage)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import albumentations as A
import cv2
import numpy as np
import torch

from models.segmenter import NUM_CLASSES, MaskGate, Segmenter, SegmenterSpec, create_segmenter, tile_coverage
from models.segmenter.tiles import split_tiles
from settings import Settings, config_for
from training.loader import EpochBatches, MaskedFramesDataset, in_chunks, make_loader, stop_workers, worker_rng
from training.loop import EarlyStopping, amp_step
from training.mask_gate import choose_gate
from training.progress import JobProgress

VAL_CHUNK = 32  # validation frames predicted at once
GATE_STEP = 2  # the gate is chosen on every second pixel of each side


@dataclass(frozen=True)
class SegmenterConfig:
    arch: str = "DeepLabV3Plus"
    encoder: str = "resnet18"
    encoder_weights: str | None = "imagenet"
    image_size: tuple[int, int] = (512, 288)  # width, height frames are squashed to (16:9)
    tiles: tuple[int, int] = (1, 1)  # cols, rows: train and predict on tiles of image_size / tiles
    synthetic_frames: int = 0  # cold start: synthetic soiled frames added to the training part only
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    patience: int = 8
    cutmix: float = 0.5
    grid: tuple[int, int] = (4, 4)  # cols, rows of the tile-coverage metrics
    overlap: float = 0.0  # windows share this fraction with their neighbours when tiles > 1 (blended)
    flips: str = ""  # test-time flips: "", "h", "v" or "h,v"
    head_grid: tuple[int, int] = (4, 4)  # cols, rows of the TileHead family's own coverage grid
    synthetic_style: str = "blobs"  # training/synthetic.py style of the cold-start frames
    gate: bool = True  # choose a minimum area and per-class confidence on the validation frames
    loader_workers: int = 2  # DataLoader processes reading and augmenting frames and masks (0: in this process)
    device: str = "auto"
    allow_random_weights: bool = False  # where the encoder's pretrained weights are missing
    seed: int = 0

    def spec(self) -> SegmenterSpec:
        return SegmenterSpec(
            arch=self.arch,
            encoder=self.encoder,
            encoder_weights=self.encoder_weights,
            image_size=tuple(self.image_size),
            tiles=tuple(self.tiles),
            overlap=self.overlap,
            flips=tuple(f.strip() for f in self.flips.split(",") if f.strip()),
            tile_grid=tuple(self.head_grid),
            allow_random_weights=self.allow_random_weights,
            device=self.device,
        )


def segmenter_config(settings: Settings) -> SegmenterConfig:
    return config_for(settings, SegmenterConfig, "segmenter_", grid="coverage_grid")


def joint_augmentations() -> A.Compose:
    """Geometry applied to image and mask together (nearest for the mask); photometry to the image only."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), rotate=(-8, 8), border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    )


def mask_aware_cutmix(
    images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, probability: float
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a box from another frame of the batch, image and mask alike, centred on soiling where it has any,
    so that the rare soiled pixels travel instead of empty background."""
    images, masks = images.copy(), masks.copy()
    n, height, width = masks.shape
    for i in range(n):
        if n < 2 or rng.random() >= probability:
            continue
        j = int(rng.choice([k for k in range(n) if k != i]))
        box_h, box_w = int(height * rng.uniform(0.2, 0.5)), int(width * rng.uniform(0.2, 0.5))
        soiled = np.argwhere(masks[j] > 0)
        cy, cx = soiled[rng.integers(len(soiled))] if len(soiled) else (rng.integers(height), rng.integers(width))
        y0, x0 = int(np.clip(cy - box_h // 2, 0, height - box_h)), int(np.clip(cx - box_w // 2, 0, width - box_w))
        images[i, y0 : y0 + box_h, x0 : x0 + box_w] = images[j, y0 : y0 + box_h, x0 : x0 + box_w]
        masks[i, y0 : y0 + box_h, x0 : x0 + box_w] = masks[j, y0 : y0 + box_h, x0 : x0 + box_w]
    return images, masks


def class_weights(masks: Iterable[np.ndarray]) -> np.ndarray:
    """Inverse square-root frequency: soiling is a minority of pixels; absent classes get the largest weight."""
    counts = sum(np.bincount(m.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] for m in masks).astype(np.float64)
    frequency = (counts + 1) / (counts.sum() + NUM_CLASSES)
    weights = 1 / np.sqrt(frequency)
    return (weights / weights.mean()).astype(np.float32)


def confusion_of(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pixel counts: rows true class, columns predicted class."""
    return np.bincount(
        true.ravel().astype(np.int64) * NUM_CLASSES + predicted.ravel(), minlength=NUM_CLASSES**2
    ).reshape(NUM_CLASSES, NUM_CLASSES)


def class_iou(confusion: np.ndarray) -> list[float | None]:
    """Per class; None for a class absent from both truth and prediction."""
    true_positive = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    return [float(tp / u) if u else None for tp, u in zip(true_positive, union, strict=True)]


def mean_iou(confusion: np.ndarray) -> float | None:
    present = [v for v in class_iou(confusion) if v is not None]
    return float(np.mean(present)) if present else None


def segmentation_metrics(true: Sequence[np.ndarray], predicted: Sequence[np.ndarray], grid=(4, 4)) -> dict:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    tile_errors, tile_hits, tiles, frame_iou = [], 0, 0, []
    for t, p in zip(true, predicted, strict=True):
        confusion += confusion_of(t, p)
        cover_t, cover_p = tile_coverage(t, grid), tile_coverage(p, grid)
        tile_errors.append(np.abs(cover_t[..., 1:] - cover_p[..., 1:]).mean())
        tile_hits += int((cover_t.argmax(-1) == cover_p.argmax(-1)).sum())
        tiles += cover_t.shape[0] * cover_t.shape[1]
        dirt_t, dirt_p = t > 0, p > 0
        union = (dirt_t | dirt_p).sum()
        frame_iou.append(float((dirt_t & dirt_p).sum() / union) if union else 1.0)
    iou = class_iou(confusion)
    return {
        "iou": dict(zip(("clear", "transparent", "semi-transparent", "opaque"), iou, strict=True)),
        "miou": mean_iou(confusion),
        "pixel_accuracy": float(np.diag(confusion).sum() / max(confusion.sum(), 1)),
        "dirt_iou_per_frame_mean": float(np.mean(frame_iou)) if frame_iou else None,
        "tile_coverage_mae": float(np.mean(tile_errors)) if tile_errors else None,
        "tile_accuracy": float(tile_hits / max(tiles, 1)),
        "confusion": confusion.tolist(),
    }


class CutmixCollate:
    """Stacks a batch of (frame, mask) pairs and applies `mask_aware_cutmix` to it, in the DataLoader worker."""

    def __init__(self, probability: float, seed: int):
        self.probability, self.seed = probability, seed
        self.rng: np.random.Generator | None = None

    def __call__(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rng is None:
            self.rng = worker_rng(self.seed)
        images, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        images, masks = mask_aware_cutmix(images, masks, self.rng, self.probability)
        return torch.from_numpy(images), torch.from_numpy(masks.astype(np.int64))


def validation_miou(segmenter: Segmenter, pixels: Sequence[np.ndarray], masks: Sequence[np.ndarray], val) -> float:
    """Mean IoU over the validation frames, predicted a chunk at a time (confusions summed, masks dropped)."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for chunk in in_chunks(pixels, val, VAL_CHUNK):
        for truth, predicted in zip((masks[i] for i in chunk.indices), segmenter.predict_masks(chunk), strict=True):
            confusion += confusion_of(truth, predicted)
    return mean_iou(confusion) or 0.0


def gate_on(segmenter: Segmenter, pixels: Sequence[np.ndarray], masks: Sequence[np.ndarray], val) -> MaskGate:
    """The gate chosen on the validation frames, their probabilities subsampled a chunk at a time."""
    probabilities, truths = [], []
    for chunk in in_chunks(pixels, val, VAL_CHUNK):
        probabilities += [p[:, ::GATE_STEP, ::GATE_STEP].copy() for p in segmenter.predict_probabilities(chunk)]
        truths += [masks[i][::GATE_STEP, ::GATE_STEP].copy() for i in chunk.indices]
    return choose_gate(probabilities, truths, step=1)


def train_segmenter(
    pixels: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    train: np.ndarray,
    val: np.ndarray,
    config: SegmenterConfig,
    progress: JobProgress,
) -> Segmenter:
    """`pixels`, `masks`: frames at the configured size and their class masks, lists or arrays read from the
    frame cache on access; DataLoader workers read, augment and cutmix them a batch ahead of training."""
    torch.manual_seed(config.seed)
    segmenter = create_segmenter(config.spec())
    per_frame = config.tiles[0] * config.tiles[1]
    split = partial(split_tiles, tiles=config.tiles) if per_frame > 1 else None
    dataset = MaskedFramesDataset(pixels, masks, joint_augmentations(), split, per_frame)
    examples = [int(i) * per_frame + part for i in train for part in range(per_frame)]  # tiles of training frames
    model, device = segmenter.model, segmenter.device
    weights = torch.tensor(class_weights(masks[int(i)] for i in train), device=device)
    batches = EpochBatches(examples, config.batch_size, config.seed, min_batch=2)
    collate = CutmixCollate(config.cutmix, config.seed)
    loader = make_loader(dataset, batches, config.loader_workers, config.seed, collate, pin=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    stopping = EarlyStopping(model, config.patience, "mIoU", progress)
    progress.stage(f"training {config.arch}/{config.encoder} segmenter", total=config.epochs)
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            losses = []
            for images, targets in loader:
                x, y = segmenter.to_tensor(images), targets.to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    if hasattr(model, "training_loss"):  # a family with its own objective (Mask2Former's matching)
                        loss = model.training_loss(x, y, weights)
                    else:
                        loss = torch.nn.functional.cross_entropy(model(x).float(), y, weight=weights)
                losses.append(amp_step(loss, optimizer, scaler))
            score = validation_miou(segmenter, pixels, masks, val)
            progress.update(done=epoch, epoch=epoch, loss=round(float(np.mean(losses)), 4), val_miou=round(score, 4))
            if stopping.should_stop(epoch, score):
                break
    finally:
        stop_workers(loader)
    stopping.restore_best()
    if config.gate and len(val):
        gate = gate_on(segmenter, pixels, masks, val)
        progress.log(f"gate chosen on {len(val)} validation frames: {gate}")
        segmenter = segmenter.with_options(gate=gate)
    return segmenter
