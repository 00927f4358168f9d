"""The segmenter on an optimised runtime (ONNX Runtime, OpenVINO, bf16), like the CLIP tower and the classifier:
the network with its pixel normalisation is exported for one window (uint8 NHWC in, class logits out); window
blending, flips, the gate and coverage stay as they are. Checked against fp32 PyTorch on the fixed fidelity
frames: cosine of the probability maps and the share of pixels given the same class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.runtimes import EncoderSource, FidelityFloors, RuntimeUnavailableError
from models.runtimes.base import ImageEncoder
from models.runtimes.factory import exported
from models.runtimes.fidelity import Fidelity, enforce, fidelity_frames, measure_fidelity
from models.runtimes.tower import PixelTower
from models.segmenter.model import Segmenter

FIDELITY_FRAMES = 8


class RuntimeSegmenter(Segmenter):
    def __init__(self, base: Segmenter, runner: ImageEncoder, fidelity: Fidelity | None = None):
        super().__init__(base.model, base.spec, base.device, base.weights, base.gate, base.coverage_stack)
        self.runner = runner
        self.fidelity = fidelity
        self.runtime = runner.runtime

    def _input(self, pixels: np.ndarray) -> torch.Tensor:
        """Raw 0-255 values as float NCHW: windows and flips cut them; the exported graph normalises."""
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        windows = x.permute(0, 2, 3, 1).to(torch.uint8).contiguous().numpy()
        return torch.from_numpy(self.runner.encode(windows)).float().softmax(dim=1)

    def with_options(self, **changes) -> RuntimeSegmenter:
        return RuntimeSegmenter(super().with_options(**changes), self.runner, self.fidelity)


def segmenter_tower(segmenter: Segmenter) -> PixelTower:
    return PixelTower(segmenter.model.float().cpu().eval(), *segmenter.normalisation, normalize=False).eval()


def on_runtime(
    segmenter: Segmenter, runtime: str, cache_root: Path, name: str, floors: FidelityFloors
) -> RuntimeSegmenter:
    """The segmenter on `runtime`; FidelityError below the floors, RuntimeUnavailableError where it cannot run."""
    if segmenter.device.type != "cpu":
        raise RuntimeUnavailableError(f"{runtime} serves segmenters on the CPU only, not on {segmenter.device}")
    source = EncoderSource(segmenter_tower(segmenter), name, segmenter.window, torch.device("cpu"), cache_root)
    fast = RuntimeSegmenter(segmenter, exported(runtime, source, f"{segmenter.arch}/{segmenter.encoder}"))
    frames = list(fidelity_frames(FIDELITY_FRAMES, segmenter.image_size))
    reference, candidate = (model.predict_probabilities(frames) for model in (segmenter, fast))
    count = len(frames)

    def classes(flat: np.ndarray) -> np.ndarray:
        return flat.reshape(count, reference.shape[1], -1).argmax(axis=1)

    fast.fidelity = measure_fidelity(reference.reshape(count, -1), candidate.reshape(count, -1), classes)
    enforce(runtime, fast.fidelity, floors)
    return fast
