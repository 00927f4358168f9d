"""Mask2Former (Hugging Face transformers) as a semantic segmenter: query masks x query classes -> class maps.

`encoder` names a checkpoint (hub name such as facebook/mask2former-swin-tiny-ade-semantic, or a local
directory); its class head is re-initialised for our classes. "tiny" and "small" are built-in Swin configs with
random weights for tests and offline benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

from models.segmenter.spec import NUM_CLASSES, SegmenterSpec

CLASS_NAMES = ("clear", "transparent", "semi-transparent", "opaque")
BUILTIN = {
    "tiny": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "hidden": 32, "queries": 8},
    "small": {"embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [2, 3, 6, 12], "hidden": 128, "queries": 16},
}
EPS = 1e-6


def builtin_config(name: str) -> Mask2FormerConfig:
    size = BUILTIN[name]
    backbone = SwinConfig(
        embed_dim=size["embed_dim"],
        depths=size["depths"],
        num_heads=size["num_heads"],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    hidden = size["hidden"]
    return Mask2FormerConfig(
        backbone_config=backbone,
        hidden_dim=hidden,
        mask_feature_size=hidden,
        feature_size=hidden,
        encoder_feedforward_dim=2 * hidden,
        dim_feedforward=2 * hidden,
        encoder_layers=2,
        decoder_layers=3,
        num_queries=size["queries"],
        num_attention_heads=4 if hidden >= 128 else 2,
        use_pretrained_backbone=False,
        **labels(),
    )


def labels() -> dict:
    return {
        "num_labels": NUM_CLASSES,
        "id2label": dict(enumerate(CLASS_NAMES)),
        "label2id": {n: i for i, n in enumerate(CLASS_NAMES)},
    }


class Mask2FormerSemantic(nn.Module):
    def __init__(self, model: Mask2FormerForUniversalSegmentation):
        super().__init__()
        self.net = model

    @property
    def network_config(self) -> dict:
        return self.net.config.to_dict()

    @staticmethod
    def semantic_log_probabilities(outputs, size: tuple[int, int]) -> torch.Tensor:
        classes = outputs.class_queries_logits.float().softmax(-1)[..., :-1]  # the last class is "no object"
        masks = outputs.masks_queries_logits.float().sigmoid()
        semantic = torch.einsum("bqc,bqhw->bchw", classes, masks)
        semantic = F.interpolate(semantic, size=size, mode="bilinear", align_corners=False)
        return (semantic / semantic.sum(1, keepdim=True).clamp_min(EPS)).clamp_min(EPS).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.semantic_log_probabilities(self.net(pixel_values=x), x.shape[-2:])

    def training_loss(self, x: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        """Mask2Former's own loss (Hungarian matching of queries to the classes present, mask + dice + class),
        plus the class-weighted pixel cross-entropy on the semantic map that the other families train with."""
        present = [torch.unique(t) for t in targets]
        outputs = self.net(
            pixel_values=x,
            mask_labels=[(t[None] == c[:, None, None]).float() for t, c in zip(targets, present, strict=True)],
            class_labels=present,
        )
        pixel = F.nll_loss(self.semantic_log_probabilities(outputs, x.shape[-2:]), targets, weight=class_weights)
        return outputs.loss + pixel


def build(spec: SegmenterSpec, weights: str | None, network_config: dict | None = None) -> nn.Module:
    if network_config is not None:  # a saved version: its own config, weights loaded by the caller
        return Mask2FormerSemantic(Mask2FormerForUniversalSegmentation(Mask2FormerConfig.from_dict(network_config)))
    if spec.encoder in BUILTIN:
        if weights is not None:
            raise FileNotFoundError(f"the built-in Mask2Former config {spec.encoder!r} has no pretrained weights")
        return Mask2FormerSemantic(Mask2FormerForUniversalSegmentation(builtin_config(spec.encoder)))
    if weights is None:
        config = Mask2FormerConfig.from_pretrained(spec.encoder, use_pretrained_backbone=False, **labels())
        return Mask2FormerSemantic(Mask2FormerForUniversalSegmentation(config))
    model = Mask2FormerForUniversalSegmentation.from_pretrained(spec.encoder, ignore_mismatched_sizes=True, **labels())
    return Mask2FormerSemantic(model)
