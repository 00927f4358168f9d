"""The serving core built from settings (for the HTTP app and the workers alike); a missing model becomes a
reported error, not a crash."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from labelstudio.client import LabelStudioClient
from labelstudio.images import ImageFetcher
from labelstudio.tokens import LabelStudioAuth
from models.active_models import ActiveModels
from models.embedding_cache import EmbeddingCache
from models.kinds import load_version
from models.pipeline import SoilingPipeline
from models.registry import ModelRegistry, ModelVersion
from models.zero_shot import (
    PromptSetError,
    WeightsUnavailableError,
    ZeroShotConfig,
    load_prompt_set,
    shared_zero_shot_scorer,
)
from models.zero_shot.prompts import PROMPTS_FILE, PROMPTS_KIND
from serving.service import PredictionService
from settings import Settings, config_for

log = logging.getLogger(__name__)


@dataclass
class Serving:
    settings: Settings
    service: PredictionService | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def build_fetcher(settings: Settings) -> ImageFetcher:
    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    return ImageFetcher(
        settings.label_studio_url,
        LabelStudioAuth(settings.label_studio_url, key) if key else None,
        allowed_hosts=settings.allowed_image_hosts,
        max_bytes=settings.max_image_bytes,
        timeout=settings.image_fetch_timeout,
        threads=settings.fetch_threads,
    )


def label_studio_client(settings: Settings, purpose: str) -> LabelStudioClient:
    """The API client for jobs; `purpose` says in the error what cannot be done without a token."""
    if not settings.label_studio_api_key:
        raise RuntimeError(f"LENSGUARD_LABEL_STUDIO_API_KEY is not set: {purpose}")
    return LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key.get_secret_value())


def zero_shot_config(settings: Settings) -> ZeroShotConfig:
    return config_for(settings, ZeroShotConfig, "clip_", model_name="clip_model")


def build_serving(settings: Settings) -> Serving:
    serving = Serving(settings=settings)
    try:
        scorer = shared_zero_shot_scorer(zero_shot_config(settings))
    except (WeightsUnavailableError, PromptSetError, ValueError) as exc:
        serving.error = str(exc)
        log.error("lensguard cannot serve predictions: %s", exc)
        return serving
    serving.warnings.extend(scorer.clip.warnings)
    if scorer.clip.random_weights:
        serving.warnings.append(f"{settings.clip_model} has RANDOM weights: predictions are meaningless")
    if not settings.label_studio_api_key:
        serving.warnings.append(
            "LENSGUARD_LABEL_STUDIO_API_KEY is not set: images stored in Label Studio cannot be fetched"
        )
    for warning in serving.warnings:
        log.warning(warning)
    cache = EmbeddingCache(settings.embedding_cache_path)
    pipeline = SoilingPipeline(scorer, cache, max_pixels=settings.max_image_pixels)
    registry = ModelRegistry(settings.registry_path)
    encoder = scorer.encoder_identity

    def same_encoder(version: ModelVersion) -> bool:
        trained_on = version.config.get("encoder", encoder)
        if trained_on != encoder:
            log.warning("%s was trained on %s embeddings, serving %s: not used", version.name, trained_on, encoder)
        return trained_on == encoder

    classifiers = ActiveModels(registry, settings.serve_kinds, lambda v: load_version(v, settings.device), same_encoder)
    prompt_sets = ActiveModels(
        registry, [PROMPTS_KIND], lambda v: scorer.with_prompt_set(load_prompt_set(v.path / PROMPTS_FILE))
    )
    segmenters = ActiveModels(registry, ["segmenter"], lambda v: load_version(v, settings.device))
    serving.service = PredictionService(
        pipeline,
        build_fetcher(settings),
        settings.type_threshold,
        classifiers,
        settings.combine,
        prompt_sets,
        segmenters,
        settings.coverage_grid,
        settings.segmenter_predraw_band,
    )
    log.info("serving %s on %s", scorer.version, scorer.clip.device)
    return serving
