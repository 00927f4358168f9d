"""Build open_clip models from a name plus a weights source: pretrained tag, hf-hub name, local file, or random."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch

from models.weights import WeightsUnavailableError

log = logging.getLogger(__name__)

BUNDLED_MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
RANDOM_SEED = 0
open_clip.add_model_config(BUNDLED_MODEL_CONFIGS)


@dataclass(frozen=True)
class ClipSpec:
    model_name: str = "ViT-B-16"
    # An open_clip pretrained tag ("openai", "laion2b_s34b_b88k"), a local checkpoint path, or None for random
    # weights. Ignored for "hf-hub:org/repo" model names, which carry their weights.
    pretrained: str | None = "openai"
    allow_random_weights: bool = False
    device: str = "auto"


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    spec: ClipSpec
    weights: str  # what was loaded: the tag, "file:<name>", "hf-hub", or "random"
    device: torch.device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def identity(self) -> str:
        """Names the image encoder exactly; embeddings cached under one identity are interchangeable."""
        return f"{self.spec.model_name}/{self.weights}"

    @property
    def is_siglip(self) -> bool:
        return getattr(self.model, "logit_bias", None) is not None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _file_identity(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return f"file:{path.stem}-{digest[:8]}"


def _weights_label(spec: ClipSpec) -> str:
    if spec.model_name.startswith("hf-hub:"):
        return "hf-hub"
    if spec.pretrained is None:
        return "random"
    path = Path(spec.pretrained).expanduser()
    if path.suffix or path.exists():
        if not path.is_file():
            raise WeightsUnavailableError(f"checkpoint file {path} does not exist")
        return _file_identity(path)
    return spec.pretrained


def _create(model_name: str, pretrained: str | None, device: torch.device) -> torch.nn.Module:
    if pretrained is None:
        torch.manual_seed(RANDOM_SEED)  # random weights are reproducible, so cached embeddings stay valid
    model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    return model.eval()


def load_clip(spec: ClipSpec) -> LoadedClip:
    """Load the model the spec names; fall back to random weights only when the spec allows it."""
    model_name = spec.model_name
    if not model_name.startswith("hf-hub:") and model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    device = resolve_device(spec.device)
    warnings: list[str] = []
    weights = _weights_label(spec)
    if weights in ("random", "hf-hub"):
        pretrained = None
    elif weights.startswith("file:"):
        pretrained = str(Path(spec.pretrained).expanduser())
    else:
        pretrained = spec.pretrained
    try:
        model = _create(model_name, pretrained, device)
    except Exception as exc:
        if weights in ("random", "hf-hub") or not spec.allow_random_weights:
            raise WeightsUnavailableError(
                f"could not load weights {spec.pretrained or model_name!r} for {model_name}: {exc}. "
                "Put the weights in the Hugging Face cache (HF_HOME), point LENSGUARD_CLIP_PRETRAINED at a "
                "local checkpoint file, or set LENSGUARD_ALLOW_RANDOM_WEIGHTS=true for tests and demos."
            ) from exc
        message = f"weights {spec.pretrained!r} for {model_name} unavailable ({exc}); serving RANDOM weights"
        log.warning(message)
        warnings.append(message)
        weights = "random"
        model = _create(model_name, None, device)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    size = preprocess.get("size", 224)
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        spec=spec,
        weights=weights,
        device=device,
        mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
        image_size=(size, size) if isinstance(size, int) else tuple(size),
        warnings=warnings,
    )
