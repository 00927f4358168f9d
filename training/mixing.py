"""timm's Mixup (mixup and cutmix with label smoothing) for the binary clean/dirty classifier."""

from __future__ import annotations

import torch
from timm.data import Mixup

MIX = {"batch": Mixup._mix_batch, "pair": Mixup._mix_pair, "elem": Mixup._mix_elem}


def binary_mixup(mixup_alpha: float, cutmix_alpha: float, label_smoothing: float, prob: float = 1.0) -> Mixup:
    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=prob,
        mode="elem",
        label_smoothing=label_smoothing,
        num_classes=2,
    )


def mix_batch(
    mixer: Mixup, x: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frames, soft P(dirty) targets, sample weights), each sample mixed with its partner (sample N-1-i, as timm
    pairs them) by the same share: pixels (blended or a pasted box), label (then smoothed) and weight alike.
    An odd batch leaves its last frame unmixed (timm mixes even batches only)."""
    if len(x) % 2:
        head = mix_batch(mixer, x[:-1], labels[:-1], weights[:-1])
        tail = (x[-1:], (labels[-1:].float() * (1 - mixer.label_smoothing) + mixer.label_smoothing / 2), weights[-1:])
        return tuple(torch.cat([a, b]) for a, b in zip(head, tail, strict=True))
    x = x.clone()
    share = MIX[mixer.mode](mixer, x)  # timm's own mixing, which also returns each sample's share (lambda)
    share = torch.as_tensor(share, dtype=torch.float32, device=x.device).reshape(-1)
    share = share.expand(len(x)) if share.numel() == 1 else share
    y = labels.float()
    mixed = share * y + (1 - share) * y.flip(0)
    soft = mixed * (1 - mixer.label_smoothing) + mixer.label_smoothing / 2  # = timm's mixup_target, class 1
    return x, soft, share * weights + (1 - share) * weights.flip(0)
