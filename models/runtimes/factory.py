"""One factory for image-encoder runtimes: a registry of names, each building an `ImageEncoder` from a tower."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError
from models.runtimes.export_cache import ExportCache
from models.runtimes.torch_encoder import TorchEncoder
from models.runtimes.tower import PixelTower, weights_digest

REFERENCE = "torch"


@dataclass
class EncoderSource:
    """What a runtime is built from: the tower, its name and input size, where exports are cached."""

    tower: PixelTower
    model_name: str
    image_size: tuple[int, int]  # width, height
    device: torch.device
    cache_root: Path | None = None
    _cache: ExportCache | None = field(default=None, init=False, repr=False)

    @cached_property
    def digest(self) -> str:
        return weights_digest(self.tower)

    @property
    def cache(self) -> ExportCache:
        if self.cache_root is None:
            raise RuntimeUnavailableError("exported runtimes need a cache directory (the data dir)")
        if self._cache is None:
            self._cache = ExportCache(self.cache_root, self.model_name, self.digest)
        return self._cache


def _onnx(int8: bool) -> Callable[[EncoderSource], ImageEncoder]:
    def build(source: EncoderSource) -> ImageEncoder:
        from models.runtimes.onnx_encoder import OnnxEncoder, exported_onnx

        _cpu_only(source, "onnx-int8" if int8 else "onnx")
        return OnnxEncoder(exported_onnx(source.tower, source.image_size, source.cache, int8), int8)

    return build


def _openvino(bf16: bool) -> Callable[[EncoderSource], ImageEncoder]:
    def build(source: EncoderSource) -> ImageEncoder:
        from models.runtimes.onnx_encoder import exported_onnx
        from models.runtimes.openvino_encoder import OpenVinoEncoder

        _cpu_only(source, "openvino-bf16" if bf16 else "openvino")
        return OpenVinoEncoder(exported_onnx(source.tower, source.image_size, source.cache, int8=False), bf16)

    return build


def _cpu_only(source: EncoderSource, runtime: str) -> None:
    if source.device.type != "cpu":
        raise RuntimeUnavailableError(f"{runtime} runs on the CPU; on {source.device.type} use the torch runtime")


RUNTIMES: dict[str, Callable[[EncoderSource], ImageEncoder]] = {
    "torch": lambda source: TorchEncoder(source.tower, source.device),
    "torch-bf16": lambda source: TorchEncoder(source.tower, source.device, bf16=True),
    "onnx": _onnx(int8=False),
    "onnx-int8": _onnx(int8=True),
    "openvino": _openvino(bf16=False),
    "openvino-bf16": _openvino(bf16=True),
}


def list_runtimes() -> list[str]:
    return list(RUNTIMES)


def create_encoder(runtime: str, source: EncoderSource) -> ImageEncoder:
    """Build a runtime by name; RuntimeUnavailableError when it cannot run here, ValueError for unknown names."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)} or auto")
    try:
        return RUNTIMES[runtime](source)
    except ImportError as exc:
        raise RuntimeUnavailableError(f"runtime {runtime!r} is not installed: {exc}") from exc


def exported(runtime: str, source: EncoderSource, what: str) -> ImageEncoder:
    """`create_encoder` for a network that may not export (an operator ONNX lacks): RuntimeUnavailableError
    saying so, for the caller to serve it with PyTorch."""
    if runtime not in RUNTIMES:
        return create_encoder(runtime, source)  # its ValueError names the known runtimes
    try:
        return create_encoder(runtime, source)
    except RuntimeUnavailableError:
        raise
    except Exception as exc:  # torch.onnx and the runtimes raise many kinds of errors, ValueError among them
        raise RuntimeUnavailableError(f"{what} does not run on {runtime}: {type(exc).__name__}: {exc}") from exc
