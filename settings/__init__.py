"""The one settings object: environment variables with the LENSGUARD_ prefix (see README and .env.example)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.verdict import CombineMode

log = logging.getLogger(__name__)
Config = TypeVar("Config")


def parse_pair(value: object) -> object:
    """'512x288' -> (512, 288): sizes are WIDTHxHEIGHT, grids COLSxROWS."""
    if isinstance(value, str):
        first, sep, second = value.lower().partition("x")
        if not sep:
            raise ValueError(f"{value!r} is not of the form AxB (e.g. 4x4)")
        return int(first), int(second)
    return value


Pair = Annotated[tuple[int, int], NoDecode, BeforeValidator(parse_pair)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LENSGUARD_", env_file=".env", extra="ignore")

    # HTTP service
    host: str = "0.0.0.0"
    port: int = 9090
    basic_auth_user: str | None = None
    basic_auth_pass: SecretStr | None = None

    # Label Studio connection: where task images live and which token reads them
    label_studio_url: str = "http://localhost:8080"
    label_studio_api_key: SecretStr | None = None

    # Image fetching
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_image_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    image_fetch_timeout: float = 30.0
    fetch_threads: int = 8

    # Zero-shot model
    clip_model: str = "ViT-B-16"
    clip_pretrained: str | None = "openai"
    allow_random_weights: bool = False
    prompt_set: str = "soiling-v1"
    device: str = "auto"
    batch_size: int = 0  # 0: chosen for the device (32 on CPU, more on a GPU with room)
    type_threshold: float = 0.3

    # Trained classifiers: which active kind serves first, and how it joins zero-shot
    serve_kinds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["finetune", "probe"])
    combine: CombineMode = CombineMode.AVERAGE

    # Job queue and training
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("LENSGUARD_REDIS_URL", "REDIS_URL")
    )
    auto_train_kinds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["probe", "segmenter"])
    train_min_new_annotations: int = 10
    train_debounce_seconds: float = 5.0
    train_retries: int = 2
    preannotate_on_import: bool = True
    preannotate_chunk_size: int = 64
    job_timeout_seconds: int = 4 * 3600
    promotion_metric: str = "roc_auc"
    val_fraction: float = 0.25
    threshold_target_recall: float | None = None
    pseudo_labels: bool = False
    pseudo_low: float = 0.1
    pseudo_high: float = 0.9
    pseudo_weight: float = 0.3
    finetune_arch: str = "efficientnet_b0"
    finetune_pretrained: bool = True
    finetune_image_size: int = 224
    finetune_epochs: int = 15
    finetune_batch_size: int = 32
    finetune_patience: int = 3
    finetune_lr: float = 3e-4
    finetune_mixup: float = 0.0  # timm Mixup: mixup alpha (0: off)
    finetune_cutmix: float = 0.0  # timm Mixup: cutmix alpha (0: off)
    finetune_label_smoothing: float = 0.1  # with mixup or cutmix

    # Segmenter (segmentation-models-pytorch) and tile coverage
    segmenter_arch: str = "DeepLabV3Plus"  # chosen from benchmarks/segmenter_zoo.py (README)
    segmenter_encoder: str = "resnet18"
    segmenter_encoder_weights: str | None = "imagenet"
    segmenter_image_size: Pair = (512, 288)  # WIDTHxHEIGHT frames are squashed to
    segmenter_tiles: Pair = (1, 1)  # COLSxROWS: train and predict on tiles of the frame (sides multiples of 32)
    segmenter_synthetic_frames: int = 0  # cold-start augmentation with synthetic soiling (training part only)
    segmenter_epochs: int = 40
    segmenter_batch_size: int = 8
    segmenter_lr: float = 1e-3
    segmenter_patience: int = 8
    segmenter_cutmix: float = 0.5
    segmenter_min_masked_frames: int = 10
    segmenter_overlap: float = 0.0  # with tiles: fraction of a tile shared with its neighbours, blended
    segmenter_flips: str = ""  # test-time flips averaged with the plain pass: "", "h", "v" or "h,v"
    segmenter_head_grid: Pair = (4, 4)  # COLSxROWS coverage grid of the TileHead family
    segmenter_synthetic_style: str = "blobs"  # blobs | realistic (haze, film, condensation, splashes)
    segmenter_gate: bool = True  # minimum dirt area and per-class confidence chosen on the validation frames
    segmenter_predraw_band: float = 0.0  # also draw masks on frames called clean with P(dirty) >= 0.5 - band
    coverage_grid: Pair = (4, 4)  # COLSxROWS grid of tile-coverage metrics (TiledSoilingNet)
    tile_grid: Pair | None = None  # deprecated: ROWSxCOLS, read into coverage_grid with a warning

    # Local state: embedding cache, model registry
    data_dir: Path = Path(".lensguard")
    model_dir: Path | None = None

    @field_validator("allowed_image_hosts", "serve_kinds", "auto_train_kinds", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return value

    @field_validator("clip_pretrained", "segmenter_encoder_weights", mode="before")
    @classmethod
    def _none_means_random(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return value

    @model_validator(mode="after")
    def _deprecated_names(self) -> Settings:
        if self.tile_grid is not None:
            message = "LENSGUARD_TILE_GRID (ROWSxCOLS) is deprecated: use LENSGUARD_COVERAGE_GRID (COLSxROWS)"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            log.warning(message)
            if "coverage_grid" not in self.model_fields_set:
                self.coverage_grid = (self.tile_grid[1], self.tile_grid[0])
        return self

    @property
    def embedding_cache_path(self) -> Path:
        return self.data_dir / "embeddings.sqlite3"

    @property
    def registry_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def config_for(settings: Settings, config_class: type[Config], prefix: str = "", **renamed: str) -> Config:
    """A model family's config dataclass filled from the settings, so no setting is copied by hand.

    Each field takes the setting `renamed[field]`, else `<prefix><field>`, else the setting of the same name
    (shared ones such as `device`); a field with no setting keeps the dataclass default.
    """
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in renamed and renamed[field.name] not in Settings.model_fields:
            raise KeyError(f"{config_class.__name__}.{field.name}: no setting {renamed[field.name]!r}")
        candidates = [renamed[field.name]] if field.name in renamed else [prefix + field.name, field.name]
        name = next((n for n in candidates if n in Settings.model_fields), None)
        if name is not None:
            values[field.name] = getattr(settings, name)
    return config_class(**values)
