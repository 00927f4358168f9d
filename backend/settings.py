"""The one settings object: environment variables with the LENSGUARD_ prefix (see README and .env.example)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.verdict import CombineMode


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

    # Segmenter (segmentation-models-pytorch) and tile coverage
    segmenter_arch: str = "Unet"
    segmenter_encoder: str = "resnet18"
    segmenter_encoder_weights: str | None = "imagenet"
    segmenter_image_size: str = "512x288"  # WIDTHxHEIGHT frames are squashed to
    segmenter_tiles: str = "1x1"  # COLSxROWS: train and predict on tiles of the frame (sides multiples of 32)
    segmenter_synthetic_frames: int = 0  # cold-start augmentation with synthetic soiling (training part only)
    segmenter_epochs: int = 40
    segmenter_batch_size: int = 8
    segmenter_lr: float = 1e-3
    segmenter_patience: int = 8
    segmenter_cutmix: float = 0.5
    segmenter_min_masked_frames: int = 10
    tile_grid: str = "4x4"

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

    @property
    def embedding_cache_path(self) -> Path:
        return self.data_dir / "embeddings.sqlite3"

    @property
    def registry_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()
