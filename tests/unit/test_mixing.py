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
    share = ((mixed_weights - partner) / (weights - partner)).numpy()
    np.testing.assert_allclose(share, (white - labels.flip(0)) / (labels - labels.flip(0)) * 0 + share, atol=1e-6)
    assert torch.all(mixed_weights >= torch.minimum(weights, partner) - 1e-6)
    assert torch.all(mixed_weights <= torch.maximum(weights, partner) + 1e-6)


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
