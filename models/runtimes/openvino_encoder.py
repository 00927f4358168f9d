"""OpenVINO inference of the exported ONNX tower, at fp32 or at bf16 where the CPU has bf16 instructions."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError
from models.runtimes.torch_encoder import cpu_supports_bf16


class OpenVinoEncoder(ImageEncoder):
    def __init__(self, path: Path, bf16: bool = False):
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeUnavailableError("the openvino runtimes need the openvino package") from exc
        if bf16 and not cpu_supports_bf16():
            raise RuntimeUnavailableError("openvino-bf16 needs a CPU with bf16 instructions (avx512_bf16 or amx)")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.path = path
        self._lock = threading.Lock()  # one infer request, not thread-safe
        self.runtime = "openvino-bf16" if bf16 else "openvino"

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self.request.infer([np.ascontiguousarray(pixels, dtype=np.uint8)])
            return np.asarray(result[0], dtype=np.float32).copy()
