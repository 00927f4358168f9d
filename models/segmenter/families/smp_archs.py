"""segmentation-models-pytorch's families (Unet, FPN, DeepLabV3+, Segformer, ...) on any smp or timm encoder."""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from models.segmenter.spec import NUM_CLASSES, SegmenterSpec

ARCHS = (
    "Unet",
    "UnetPlusPlus",
    "MAnet",
    "Linknet",
    "FPN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "PAN",
    "UPerNet",
    "Segformer",
    "DPT",  # timm ("tu-") transformer encoders only
)


def build(spec: SegmenterSpec, weights: str | None, network_config: dict | None = None) -> nn.Module:
    return smp.create_model(spec.arch, encoder_name=spec.encoder, encoder_weights=weights, classes=NUM_CLASSES)
