"""The one rule for every pretrained load (CLIP, timm backbones, segmentation encoders): where weights cannot be
had, fall back to random initialisation only when the caller allows it, else fail with one line saying what to
change. Never a hub traceback as the error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
Model = TypeVar("Model")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be loaded and random weights were not allowed; retrying cannot help."""


def pretrained_or_random(
    build: Callable[[bool], Model], what: str, how_to_fix: str, allow_random: bool, wanted: bool = True
) -> tuple[Model, bool]:
    """(model, fell back to random weights): `build(True)` loads pretrained weights, `build(False)` does not;
    `wanted=False` (the user asked for random initialisation) builds without trying."""
    if not wanted:
        return build(False), False
    try:
        return build(True), False
    except Exception as exc:  # hub, network, cache and file errors all mean the same here
        reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if not allow_random:
            raise WeightsUnavailableError(
                f"pretrained weights for {what} are unavailable ({reason}); {how_to_fix}, "
                "or set LENSGUARD_ALLOW_RANDOM_WEIGHTS=true to train from random initialisation"
            ) from None
        log.warning("pretrained weights for %s unavailable (%s): training from RANDOM initialisation", what, reason)
        return build(False), True
