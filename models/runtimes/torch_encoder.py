"""The PyTorch reference runtime: fp32 on CPU (fp16 autocast on CUDA), and a bf16 CPU variant."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchEncoder(ImageEncoder):
    def __init__(self, tower: torch.nn.Module, device: torch.device, bf16: bool = False):
        if bf16 and device.type == "cpu" and not cpu_supports_bf16():
            raise RuntimeUnavailableError("torch-bf16 needs a CPU with bf16 instructions (avx512_bf16 or amx)")
        self.tower = tower.to(device).eval()
        self.device = device
        self.bf16 = bf16
        self.runtime = "torch-bf16" if bf16 else "torch"

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.bf16 else torch.float16)
        if self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC already on any device (the GPU-decode path hands tensors over directly)."""
        with self._autocast():
            return self.tower(pixels.to(self.device, non_blocking=True)).float()

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.encode_tensor(torch.from_numpy(np.ascontiguousarray(pixels))).cpu().numpy()
