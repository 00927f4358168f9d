"""Every pretrained load in a job behaves the same when weights are missing (no hub access here): a one-line
error naming the setting to change, or random initialisation where the user allowed it, said in the result."""

from __future__ import annotations

import numpy as np
import pytest

from models.weights import WeightsUnavailableError
from training.finetune import FinetuneConfig, finetune
from training.progress import JobProgress
from training.segment import SegmenterConfig, train_segmenter


def tiny_frames(n: int = 8, size: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)], np.arange(n) % 2


def test_a_timm_backbone_without_weights_fails_in_one_line_naming_the_setting():
    pixels, labels = tiny_frames()
    config = FinetuneConfig(arch="test_efficientnet", pretrained=True, image_size=32, epochs=1, batch_size=4)
    with pytest.raises(WeightsUnavailableError) as failure:
        finetune(pixels, labels, np.ones(8, np.float32), np.arange(6), np.arange(6, 8), config, JobProgress())
    message = str(failure.value)
    assert "\n" not in message and "LENSGUARD_FINETUNE_PRETRAINED=false" in message
    assert "LENSGUARD_ALLOW_RANDOM_WEIGHTS=true" in message


def test_allowed_random_weights_train_from_scratch_and_say_so():
    pixels, labels = tiny_frames()
    config = FinetuneConfig(
        arch="test_efficientnet", pretrained=True, image_size=32, epochs=1, batch_size=4, allow_random_weights=True
    )
    model = finetune(pixels, labels, np.ones(8, np.float32), np.arange(6), np.arange(6, 8), config, JobProgress())
    assert model.random_init and model.predict_proba(pixels).shape == (8,)


def test_a_segmentation_encoder_without_weights_follows_the_same_rule():
    pixels, _ = tiny_frames(4, 64)
    masks = [np.zeros((64, 64), np.uint8) for _ in pixels]
    masks[0][:20, :20] = 3
    config = SegmenterConfig(
        encoder="resnet18", encoder_weights="imagenet", image_size=(64, 64), epochs=1, batch_size=2, device="cpu"
    )
    with pytest.raises(WeightsUnavailableError, match="LENSGUARD_SEGMENTER_ENCODER_WEIGHTS=none"):
        train_segmenter(pixels, masks, np.arange(3), np.arange(3, 4), config, JobProgress())
    allowed = SegmenterConfig(**{**config.__dict__, "allow_random_weights": True})
    assert train_segmenter(pixels, masks, np.arange(3), np.arange(3, 4), allowed, JobProgress()).random_init
