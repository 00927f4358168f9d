"""The one settings object: environment variables with the LENSGUARD_ prefix (see README and .env.example)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    batch_size: int = 32
    type_threshold: float = 0.3

    # Local state: embedding cache, model registry
    data_dir: Path = Path(".lensguard")

    @field_validator("allowed_image_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @field_validator("clip_pretrained", mode="before")
    @classmethod
    def _none_means_random(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return value

    @property
    def embedding_cache_path(self) -> Path:
        return self.data_dir / "embeddings.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
