import numpy as np
import pytest
import torch
from timm.data.mixup import mixup_target

from training.mixing import binary_mixup, mix_batch


@pytest.mark.parametrize(("mixup", "cutmix"), [(1.0, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixed_labels_match_the_mixed_pixels(mixup, cutmix):
    """Dirty frames are white, clean ones black: after mixing, a frame's share of white is its label."""
    np.random.seed(0)
    labels = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    x = labels.float()[:, None, None, None].expand(8, 3, 32, 32).clone()
    weights = torch.linspace(1, 2, 8)
    smoothing = 0.1
    mixer = binary_mixup(mixup, cutmix, smoothing)
    mixed, soft, mixed_weights = mix_batch(mixer, x, labels, weights)
    white = mixed.mean(dim=(1, 2, 3))
    np.testing.assert_allclose(soft, white * (1 - smoothing) + smoothing / 2, atol=1e-5)
    assert ((soft > 0.05) & (soft < 0.95)).any(), "something was mixed"
    partner = weights.flip(0)
    weight_share = (mixed_weights - partner) / (weights - partner)
    differ = labels != labels.flip(0)
    pixel_share = (white - labels.flip(0).float()) / (labels - labels.flip(0)).float()
    np.testing.assert_allclose(weight_share[differ], pixel_share[differ], atol=1e-5)


def test_soft_targets_agree_with_timm_mixup_target():
    labels = torch.tensor([1, 0, 0, 1])
    share = torch.tensor([0.7, 0.2, 0.2, 0.7])[:, None]
    timm_soft = mixup_target(labels, 2, share, 0.1)[:, 1]
    mixed = share[:, 0] * labels + (1 - share[:, 0]) * labels.flip(0)
    np.testing.assert_allclose(timm_soft, mixed * 0.9 + 0.05, atol=1e-6)


def test_odd_batch_leaves_the_last_frame_unmixed_but_smoothed():
    np.random.seed(1)
    labels = torch.tensor([1, 0, 1])
    x = labels.float()[:, None, None, None].expand(3, 3, 8, 8).clone()
    mixed, soft, weights = mix_batch(binary_mixup(1.0, 0.0, 0.2), x, labels, torch.ones(3))
    assert torch.equal(mixed[2], x[2]) and soft[2].item() == pytest.approx(0.9) and weights.shape == (3,)


def test_finetune_trains_with_mixup_and_cutmix():
    from training.finetune import FinetuneConfig, finetune
    from training.progress import JobProgress

    rng = np.random.default_rng(0)
    pixels = [np.full((32, 32, 3), 40 if i % 2 else 210, np.uint8) for i in range(21)]
    pixels = [np.clip(p + rng.integers(-10, 10, p.shape), 0, 255).astype(np.uint8) for p in pixels]
    labels = np.array([i % 2 for i in range(21)])
    config = FinetuneConfig(
        arch="test_resnet", pretrained=False, image_size=32, epochs=2, batch_size=5, mixup=0.4, cutmix=1.0
    )
    lines = []
    model = finetune(
        pixels, labels, np.ones(21), np.arange(15), np.arange(15, 21), config, JobProgress(echo=lines.append)
    )
    assert model.predict_proba(pixels[15:]).shape == (6,)
    assert any("loss=" in line for line in lines)
