"""Fine-tune a timm backbone on labelled frames: soiling-safe augmentations, AMP on GPU, early stopping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from models.classifier import TimmClassifier
from models.weights import pretrained_or_random
from settings import Settings, config_for
from training.loader import EpochBatches, LabelledFrames, Picked, make_loader, stop_workers
from training.loop import EarlyStopping, amp_step
from training.mixing import binary_mixup, mix_batch
from training.progress import JobProgress


@dataclass(frozen=True)
class FinetuneConfig:
    arch: str = "efficientnet_b0"
    pretrained: bool = True
    image_size: int = 224
    epochs: int = 15
    batch_size: int = 32
    patience: int = 3
    lr: float = 3e-4
    mixup: float = 0.0  # timm Mixup alpha for mixup (0: off)
    cutmix: float = 0.0  # timm Mixup alpha for cutmix (0: off); with both, each batch picks one
    label_smoothing: float = 0.1  # with mixup or cutmix
    device: str = "auto"
    allow_random_weights: bool = False  # where pretrained weights are missing
    loader_workers: int = 2  # DataLoader processes reading and augmenting frames (0: in this process)
    seed: int = 0


def finetune_config(settings: Settings) -> FinetuneConfig:
    return config_for(settings, FinetuneConfig, "finetune_")


def soiling_safe_augmentations() -> A.Compose:
    """Geometry and photometry that keep dirt in the frame: no random crops that could cut it away."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.95, 1.05),
                translate_percent=(-0.03, 0.03),
                rotate=(-7, 7),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.5,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
            A.ImageCompression(quality_range=(60, 95), p=0.3),
        ]
    )


def finetune(
    pixels: Sequence[np.ndarray],
    labels: np.ndarray,
    weights: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    config: FinetuneConfig,
    progress: JobProgress,
) -> TimmClassifier:
    """`pixels`: uint8 frames at the configured size, a list or frames read from the frame cache on access
    (models.frame_cache.CachedArrays); DataLoader workers read and augment them a batch ahead of training."""
    torch.manual_seed(config.seed)
    classifier, random_init = pretrained_or_random(
        lambda pretrained: TimmClassifier.create(config.arch, pretrained, config.image_size, config.device),
        f"timm {config.arch}",
        "set LENSGUARD_FINETUNE_PRETRAINED=false or put the weights in the Hugging Face cache (HF_HOME)",
        config.allow_random_weights,
        wanted=config.pretrained,
    )
    classifier.random_init = random_init
    model, device = classifier.model, classifier.device
    dataset = LabelledFrames(pixels, labels, weights, soiling_safe_augmentations())
    batches = EpochBatches(train, config.batch_size, config.seed)
    loader = make_loader(dataset, batches, config.loader_workers, config.seed, pin=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps_per_epoch = len(batches)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    positives = max(float(labels[train].sum()), 1.0)
    pos_weight = torch.tensor([(len(train) - positives) / positives], device=device)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    stopping = EarlyStopping(model, config.patience, "ROC-AUC", progress)
    mixer = None
    if config.mixup > 0 or config.cutmix > 0:
        np.random.seed(config.seed)  # timm's Mixup draws from numpy's global generator
        mixer = binary_mixup(config.mixup, config.cutmix, config.label_smoothing)
    progress.stage(f"fine-tuning {config.arch}", total=config.epochs)
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            losses = []
            for images, batch_labels, batch_weights in loader:
                x = classifier.to_tensor(images)
                y = batch_labels.to(device, torch.float32)
                w = batch_weights.to(device, torch.float32)
                if mixer is not None:
                    x, y, w = mix_batch(mixer, x, y.long(), w)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    logits = model(x).squeeze(1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits.float(), y, weight=w, pos_weight=pos_weight
                )
                losses.append(amp_step(loss, optimizer, scaler))
                scheduler.step()
            p_val = classifier.predict_proba(Picked(pixels, val))  # a batch at a time
            auc = float(roc_auc_score(labels[val], p_val)) if len(set(labels[val])) == 2 else 0.0
            progress.update(done=epoch, epoch=epoch, loss=round(float(np.mean(losses)), 4), val_roc_auc=round(auc, 4))
            if stopping.should_stop(epoch, auc):
                break
    finally:
        stop_workers(loader)
    stopping.restore_best()
    return classifier
