"""ONNX export of a pixel tower and ONNX Runtime inference, fp32 or with dynamic int8 quantisation."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError
from models.runtimes.export_cache import ExportCache

OPSET = 17


def export_onnx(tower: torch.nn.Module, image_size: tuple[int, int], path: Path) -> None:
    """Export with a dynamic batch axis; uint8 (N, H, W, 3) in, (N, dim) out."""
    width, height = image_size
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    cpu_tower = tower.to("cpu").eval()
    # Grad enabled: under no_grad, nn.MultiheadAttention takes a fused fast path that has no ONNX export.
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            cpu_tower,
            (example,),
            str(path),
            input_names=["pixels"],
            output_names=["embeddings"],
            dynamic_axes={"pixels": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: Path, path: Path) -> None:
    """Dynamic quantisation: int8 weights, activations quantised per batch at run time (no calibration set)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns on the root logger about the uint8 input it leaves alone
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def exported_onnx(tower: torch.nn.Module, image_size: tuple[int, int], cache: ExportCache, int8: bool) -> Path:
    fp32 = cache.ensure("fp32.onnx", lambda tmp: export_onnx(tower, image_size, tmp))
    if not int8:
        return fp32
    return cache.ensure("int8.onnx", lambda tmp: quantize_int8(fp32, tmp))


class OnnxEncoder(ImageEncoder):
    def __init__(self, path: Path, int8: bool = False, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailableError("the onnx runtimes need the onnxruntime package") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.runtime = "onnx-int8" if int8 else "onnx"

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        (embeddings,) = self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})
        return embeddings.astype(np.float32, copy=False)
