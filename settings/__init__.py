"""The one settings object: environment variables with the LENSGUARD_ prefix (see README and .env.example)."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from models.cascade import CascadeConfig, VlmRule
from models.registry import Registry, open_registry
from models.verdict import CombineMode
from models.vlm.config import VlmConfig
from settings.secret_files import SecretFileSettings

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
    # LENSGUARD_SECRETS_DIR: a folder of files named like the variables (lensguard_api_token, ...), as
    # `lensguard secrets DIR` and docker compose make them; the environment wins over them.
    model_config = SettingsConfigDict(
        env_prefix="LENSGUARD_", env_file=".env", extra="ignore", secrets_dir=os.environ.get("LENSGUARD_SECRETS_DIR")
    )

    # HTTP service: credentials are required on every endpoint but /health unless auth is explicitly off
    host: str = "127.0.0.1"
    port: int = 9090
    auth: bool = True
    api_token: SecretStr | None = None  # `Authorization: Bearer <token>`
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per log line
    basic_auth_user: str | None = None
    basic_auth_pass: SecretStr | None = None
    max_request_bytes: int = 8 * 1024 * 1024
    max_tasks_per_request: int = 128
    predict_time_budget: float = 60.0  # seconds; Label Studio gives up on /predict after 100
    predict_chunk_size: int = 16  # tasks fetched and scored at a time: memory stays bounded per request
    max_cached_label_configs: int = 256  # label configs kept from /setup (least recently used dropped)

    # Label Studio connection: where task images live and which token reads them
    label_studio_url: str = "http://localhost:8080"
    label_studio_api_key: SecretStr | None = None

    # Image fetching
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_image_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)  # private ones allowed
    max_image_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    image_fetch_timeout: float = 30.0
    fetch_threads: int = 32  # the fetch pool shared by all requests...
    fetch_threads_per_request: int = 8  # ...of which one request uses at most this many at once

    # Zero-shot model
    clip_model: str = "ViT-B-16"
    clip_pretrained: str | None = "openai"
    allow_random_weights: bool = False
    prompt_set: str = "soiling-v1"
    device: str = "auto"
    batch_size: int = 0  # 0: calibrated once per machine and runtime (recorded in the runtime dir)
    type_threshold: float = 0.3

    # Inference runtime of the image encoder (README "Inference runtimes")
    runtime: str = "auto"  # torch | torch-bf16 | onnx | onnx-int8 | openvino | openvino-bf16 | auto
    runtime_min_cosine: float = 0.995  # fidelity floors vs fp32 PyTorch a runtime must meet to serve
    runtime_min_agreement: float = 0.99
    runtime_dir: Path | None = None  # exports, fidelity and calibration records; default <data dir>/runtimes
    calibration_budget_s: float = 60.0
    batch_wait_ms: float = 5.0  # dynamic batching: how long a request waits for others to share its batch

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
    task_page_size: int = 500  # tasks per page when jobs read a project from Label Studio
    rescore_chunk_size: int = 500  # re-scoring mostly reads cached embeddings: bigger chunks, fewer requests
    job_timeout_seconds: int = 4 * 3600
    promotion_metric: str = "roc_auc"
    promotion_confidence: float = 0.9  # a candidate must beat the active version beyond this bootstrap interval
    promotion_resamples: int = 1000
    eval_fraction: float = 0.25  # share of labelled groups frozen into the project's evaluation set
    eval_min_groups: int = 3  # labelled groups of each class before the evaluation set is frozen
    val_fraction: float = 0.25  # inner validation split (early stopping, threshold, calibration)
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
    frame_cache_max_gb: float = 20.0  # per project: least recently used decoded frames removed beyond this
    finetune_loader_workers: int = 2  # DataLoader processes decoding and augmenting frames (0: in the job's own)

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
    segmenter_loader_workers: int = 2  # DataLoader processes reading and augmenting frames and masks (0: none)
    segmenter_min_masked_frames: int = 10
    segmenter_overlap: float = 0.0  # with tiles: fraction of a tile shared with its neighbours, blended
    segmenter_flips: str = ""  # test-time flips averaged with the plain pass: "", "h", "v" or "h,v"
    segmenter_head_grid: Pair = (4, 4)  # COLSxROWS coverage grid of the TileHead family
    segmenter_synthetic_style: str = "blobs"  # blobs | realistic (haze, film, condensation, splashes)
    segmenter_gate: bool = True  # minimum dirt area and per-class confidence chosen on the validation frames
    segmenter_predraw_band: float = 0.0  # also draw masks on frames called clean with P(dirty) >= 0.5 - band
    coverage_verdict_band: float = 0.25  # with an enabled coverage stacker: P(dirty) within band of 0.5 uses coverage
    coverage_grid: Pair = (4, 4)  # COLSxROWS grid of tile-coverage metrics (TiledSoilingNet)
    tile_grid: Pair | None = None  # deprecated: ROWSxCOLS, read into coverage_grid with a warning

    # Generative VLM cascade: explains and settles the frames whose served uncertainty lies in the band.
    # On CPU it is off unless forced; with weights missing it is off (or random, where allowed); CLIP serves on.
    vlm_model: str | None = "Qwen/Qwen2-VL-2B-Instruct"  # hub name or local directory; none: no VLM
    vlm_family: str = "auto"  # qwen2-vl | qwen2.5-vl | blip2 | auto (from the directory or the name)
    vlm_dtype: str = "auto"  # float16 on a GPU, float32 on CPU
    vlm_max_new_tokens: int = 96
    vlm_batch_size: int = 8
    vlm_max_image_pixels: int = 448 * 448
    vlm_allow_random_weights: bool = False
    vlm_force_on_cpu: bool = False
    vlm_band_low: float = 0.5  # served uncertainty 1 - |2p - 1| in [low, high] goes to the VLM
    vlm_band_high: float = 1.0
    vlm_rule: VlmRule = VlmRule.OVERRIDE  # override | average | vote
    vlm_max_per_batch: int = 8  # frames of one /predict request
    vlm_max_per_hour: int = 600  # frames per sliding hour, all processes together (kept in Redis)
    vlm_predict_budget_seconds: float = 2.0  # /predict waits this long for the VLM, then answers with CLIP alone
    vlm_preannotate: bool = True  # batch pre-annotation queues VLM jobs for the band frames of each chunk
    vlm_pseudo_labels: bool = False  # retraining takes the VLM's confident verdicts as weighted pseudo-labels
    vlm_pseudo_min_confidence: float = 0.8
    vlm_pseudo_weight: float = 0.3

    # Local state: embedding cache, model registry
    data_dir: Path = Path(".lensguard")
    model_dir: str | None = None  # a directory, or an object store URL such as s3://bucket/prefix
    model_cache_dir: Path | None = None  # local copies of object-store versions (default <data dir>/model-cache)
    model_poll_seconds: float = 5.0  # how often serving looks for a promotion in an object store
    model_storage_options: dict[str, Any] = Field(default_factory=dict)  # fsspec options (JSON), any store
    s3_endpoint_url: str | None = None  # S3-compatible stores (MinIO, Ceph...); unset: AWS
    s3_access_key_id: str | None = None  # unset: the AWS credential chain (AWS_* variables, instance role)
    s3_secret_access_key: SecretStr | None = None
    s3_region: str | None = None

    @field_validator("allowed_image_hosts", "allowed_image_networks", "serve_kinds", "auto_train_kinds", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_image_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("runtime", mode="before")
    @classmethod
    def _known_runtime(cls, value: object) -> object:
        from models.runtimes import AUTO, list_runtimes

        if isinstance(value, str):
            value = value.strip().lower()
            if value not in (AUTO, *list_runtimes()):
                raise ValueError(f"unknown runtime {value!r}; choose one of {', '.join(list_runtimes())} or auto")
        return value

    @field_validator("runtime_dir", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("clip_pretrained", "segmenter_encoder_weights", "vlm_model", mode="before")
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

    def frame_cache_path(self, project_id: int | str) -> Path:
        """Decoded, resized training frames and masks of one project (models.frame_cache)."""
        return self.data_dir / "frame-cache" / f"project-{project_id}"

    @property
    def registry_location(self) -> str:
        return self.model_dir or str(self.data_dir / "models")

    def registry_storage_options(self) -> dict[str, Any]:
        options = dict(self.model_storage_options)
        if not self.registry_location.startswith(("s3://", "s3a://")):
            return options
        if self.s3_endpoint_url:
            options.setdefault("endpoint_url", self.s3_endpoint_url)
            options.setdefault("config_kwargs", {"s3": {"addressing_style": "path"}})  # what MinIO and most want
        if self.s3_access_key_id:
            options.setdefault("key", self.s3_access_key_id)
        if self.s3_secret_access_key:
            options.setdefault("secret", self.s3_secret_access_key.get_secret_value())
        if self.s3_region:
            options.setdefault("client_kwargs", {"region_name": self.s3_region})
        return options

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """A variable wins over its LENSGUARD_<NAME>_FILE twin, which wins over the .env file."""
        return init_settings, env_settings, SecretFileSettings(settings_cls), dotenv_settings, file_secret_settings

    @property
    def runtime_path(self) -> Path:
        return self.runtime_dir or self.data_dir / "runtimes"


def vlm_config(settings: Settings) -> VlmConfig | None:
    """None when no VLM is configured (LENSGUARD_VLM_MODEL=none)."""
    if not settings.vlm_model:
        return None
    return config_for(settings, VlmConfig, "vlm_")


def cascade_config(settings: Settings) -> CascadeConfig:
    return CascadeConfig(
        band=(settings.vlm_band_low, settings.vlm_band_high),
        rule=settings.vlm_rule,
        max_per_batch=settings.vlm_max_per_batch,
        max_per_hour=settings.vlm_max_per_hour,
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()


def open_model_registry(settings: Settings) -> Registry:
    """The model registry the settings name: a local directory, or an object store with a local cache."""
    return open_registry(
        settings.registry_location,
        settings.registry_storage_options(),
        settings.model_cache_dir or settings.data_dir / "model-cache",
        settings.model_poll_seconds,
    )


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
