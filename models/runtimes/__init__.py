"""Inference runtimes for image towers: PyTorch, ONNX Runtime and OpenVINO, checked against fp32 PyTorch."""

from models.runtimes.base import ImageEncoder, RuntimeUnavailableError
from models.runtimes.batching import DynamicBatcher
from models.runtimes.factory import EncoderSource, create_encoder, list_runtimes
from models.runtimes.fidelity import Fidelity, FidelityError, FidelityFloors
from models.runtimes.selection import AUTO, OpenedRuntime, open_runtime

__all__ = [
    "AUTO",
    "DynamicBatcher",
    "EncoderSource",
    "Fidelity",
    "FidelityError",
    "FidelityFloors",
    "ImageEncoder",
    "OpenedRuntime",
    "RuntimeUnavailableError",
    "create_encoder",
    "list_runtimes",
    "open_runtime",
]
