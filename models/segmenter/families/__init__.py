"""Segmentation families behind one registry, one module per family (as smp keeps one folder per architecture).

Every family builds an `nn.Module` whose forward maps normalised NCHW frames to NUM_CLASSES log-scores per pixel
at the input size, so training, tiling, test-time flips and serving treat all families alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from models.segmenter.families import mask2former, smp_archs, tile_head
from models.segmenter.spec import SegmenterSpec
from models.weights import pretrained_or_random

Builder = Callable[[SegmenterSpec, str | None, dict | None], nn.Module]

FAMILIES: dict[str, Builder] = {
    **{arch: smp_archs.build for arch in smp_archs.ARCHS},
    "Mask2Former": mask2former.build,
    "TileHead": tile_head.build,
}


def family(arch: str) -> tuple[str, Builder]:
    """(canonical name, builder) for an architecture name in any case."""
    for name, builder in FAMILIES.items():
        if name.lower() == arch.lower():
            return name, builder
    raise ValueError(f"unknown segmenter architecture {arch!r}; known: {', '.join(FAMILIES)}")


def build_network(
    spec: SegmenterSpec, weights: str | None = "spec", network_config: dict | None = None
) -> tuple[nn.Module, str]:
    """(network, weights it holds). Pretrained weights that cannot be loaded raise a one-line
    WeightsUnavailableError naming the settings to change, or, where random weights are allowed, give a randomly
    initialised network ("random")."""
    name, builder = family(spec.arch)
    spec = replace(spec, arch=name)
    wanted = spec.encoder_weights if weights == "spec" else weights
    if wanted is None:
        return builder(spec, None, network_config), "random"
    network, fell_back = pretrained_or_random(
        lambda pretrained: builder(spec, wanted if pretrained else None, network_config),
        f"the segmenter {name}/{spec.encoder} ({wanted!r})",
        "set LENSGUARD_SEGMENTER_ENCODER_WEIGHTS=none to train from random initialisation or point "
        "LENSGUARD_SEGMENTER_ENCODER at a local checkpoint",
        spec.allow_random_weights,
    )
    return network, "random" if fell_back else wanted
