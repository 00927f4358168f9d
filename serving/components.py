"""The serving core built from settings (for the HTTP app and the workers alike); a missing model becomes a
reported error, not a crash."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial

import redis

from labelstudio.client import LabelStudioClient
from labelstudio.images import ImageFetcher
from models.active_models import ActiveModels
from models.calibration import CalibratedClassifier
from models.classifier.on_runtime import on_runtime as classifier_on_runtime
from models.classifier.timm_classifier import TimmClassifier
from models.kinds import load_version
from models.pipeline import SoilingPipeline
from models.registry import ModelVersion, Registry
from models.runtimes import FidelityError, FidelityFloors, RuntimeUnavailableError
from models.runtimes.factory import REFERENCE
from models.segmenter import Segmenter
from models.segmenter.on_runtime import on_runtime as segmenter_on_runtime
from models.vlm import serving_vlm
from models.zero_shot import (
    PromptSetError,
    WeightsUnavailableError,
    ZeroShotConfig,
    load_prompt_set,
    shared_zero_shot_scorer,
)
from models.zero_shot.prompts import PROMPTS_FILE, PROMPTS_KIND
from serving.resources import process_embedding_cache, process_fetcher
from serving.service import PredictionService
from serving.vlm import VlmCascade
from serving.vlm_budget import SharedHourlyBudget
from settings import Settings, cascade_config, config_for, open_model_registry, vlm_config

log = logging.getLogger(__name__)
SERVED_FILE = "served.json"  # per project: the classifier kind that was best on its frozen evaluation set


@dataclass
class Serving:
    settings: Settings
    service: PredictionService | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def build_fetcher(settings: Settings) -> ImageFetcher:
    """The process's image fetcher for these settings: one thread pool and HTTP client, shared by every job and
    request, closed at exit (serving.resources)."""
    return process_fetcher(settings)


def label_studio_client(settings: Settings, purpose: str) -> LabelStudioClient:
    """The API client for jobs; `purpose` says in the error what cannot be done without a token."""
    if not settings.label_studio_api_key:
        raise RuntimeError(f"LENSGUARD_LABEL_STUDIO_API_KEY (or _FILE) is not set: {purpose}")
    key = settings.label_studio_api_key.get_secret_value()
    return LabelStudioClient(settings.label_studio_url, key, page_size=settings.task_page_size)


def zero_shot_config(settings: Settings) -> ZeroShotConfig:
    config = config_for(settings, ZeroShotConfig, "clip_", model_name="clip_model")
    return replace(config, runtime_dir=settings.runtime_path)


def build_vlm_cascade(settings: Settings, warnings: list[str]) -> VlmCascade | None:
    """The VLM cascade, or None with the reason added to the warnings (/health): off on CPU unless forced,
    off when its weights are missing (unless random ones are allowed); CLIP serves either way."""
    config = vlm_config(settings)
    if config is None:
        return None
    try:
        cascade = cascade_config(settings)
    except ValueError as exc:
        warnings.append(f"VLM off: {exc}")
        return None
    explainer, status = serving_vlm(config)
    if explainer is None:
        warnings.append(status)
        log.warning(status)
        return None
    warnings.extend(explainer.warnings)
    if explainer.loaded.random_weights:
        warnings.append(f"the VLM {config.model} has RANDOM weights: its explanations are meaningless")
    log.info("%s; cascade %s", status, cascade.version)
    connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    hourly = SharedHourlyBudget(connection, cascade.max_per_hour)  # one cap for every process of the deployment
    return VlmCascade(explainer, cascade, settings.vlm_predict_budget_seconds, config.max_image_pixels, hourly)


RUNTIME_VARIANTS = {TimmClassifier: classifier_on_runtime, Segmenter: segmenter_on_runtime}


def model_on_runtime(model, version: ModelVersion, runtime: str, settings: Settings):
    """A fine-tuned classifier or a segmenter on the image encoder's runtime when it passes the same fidelity
    floors; PyTorch serves it otherwise (with the reason in the log)."""
    inner = model.classifier if isinstance(model, CalibratedClassifier) else model
    variant = RUNTIME_VARIANTS.get(type(inner))
    if runtime == REFERENCE or variant is None:
        return model
    floors = FidelityFloors(settings.runtime_min_cosine, settings.runtime_min_agreement)
    name = f"project{version.project}-{version.kind}"  # a newer version's export replaces the older one's
    try:
        fast = variant(inner, runtime, settings.runtime_path, name, floors)
    except (FidelityError, RuntimeUnavailableError) as exc:
        log.warning("%s served by PyTorch: %s", version.name, exc)
        return model
    log.info("%s served on %s: %s", version.name, runtime, fast.fidelity.describe())
    return CalibratedClassifier(fast, model.calibration) if inner is not model else fast


def served_kind(registry: Registry, project: int | str) -> str | None:
    """The classifier kind that was best on the project's frozen evaluation set (SERVED_FILE), if one was."""
    record = registry.read_project_file(project, SERVED_FILE) or {}
    return (record.get("classifier") or {}).get("kind")


def same_encoder(version: ModelVersion, encoder: str) -> bool:
    """Whether a classifier version was trained on embeddings of the `encoder` being served (else not used)."""
    trained_on = version.config.get("encoder", encoder)
    if trained_on != encoder:
        log.warning("%s was trained on %s embeddings, serving %s: not used", version.name, trained_on, encoder)
    return trained_on == encoder


def build_serving(settings: Settings) -> Serving:
    serving = Serving(settings=settings)
    try:
        scorer = shared_zero_shot_scorer(zero_shot_config(settings))
    except (WeightsUnavailableError, PromptSetError, ValueError, FidelityError, RuntimeUnavailableError) as exc:
        serving.error = str(exc)
        log.error("lensguard cannot serve predictions: %s", exc)
        return serving
    serving.warnings.extend(scorer.clip.warnings)
    if scorer.clip.random_weights:
        serving.warnings.append(f"{settings.clip_model} has RANDOM weights: predictions are meaningless")
    if not settings.label_studio_api_key:
        serving.warnings.append(
            "LENSGUARD_LABEL_STUDIO_API_KEY (or _FILE) is not set: images stored in Label Studio cannot be fetched"
        )
    for warning in serving.warnings:
        log.warning(warning)
    scorer.start_batching(settings.batch_wait_ms / 1000)  # concurrent /predict calls fill shared batches
    cache = process_embedding_cache(settings)
    pipeline = SoilingPipeline(scorer, cache, max_pixels=settings.max_image_pixels)
    registry = open_model_registry(settings)
    encoder = scorer.encoder_identity

    read_at: dict[str, tuple[float, str | None]] = {}  # per project: when served.json was read, and its kind

    def best_kind(project: str) -> str | None:
        """The classifier kind best on the project's evaluation set, re-read at most every poll interval."""
        when, kind = read_at.get(project, (float("-inf"), None))
        if time.monotonic() - when >= registry.poll_seconds:
            kind = served_kind(registry, project)
            read_at[project] = (time.monotonic(), kind)
        return kind

    def load_model(version: ModelVersion):
        return model_on_runtime(load_version(version, settings.device), version, scorer.runtime.runtime, settings)

    classifiers = ActiveModels(
        registry, settings.serve_kinds, load_model, partial(same_encoder, encoder=encoder), best_kind
    )
    prompt_sets = ActiveModels(
        registry, [PROMPTS_KIND], lambda v: scorer.with_prompt_set(load_prompt_set(v.path / PROMPTS_FILE))
    )
    segmenters = ActiveModels(registry, ["segmenter"], load_model)
    vlm = build_vlm_cascade(settings, serving.warnings)
    serving.service = PredictionService(
        pipeline,
        build_fetcher(settings),
        settings.type_threshold,
        classifiers,
        settings.combine,
        prompt_sets,
        segmenters,
        vlm,
        settings.coverage_grid,
        settings.segmenter_predraw_band,
        settings.coverage_verdict_band,
    )
    runtime = scorer.runtime
    fidelity = f", {runtime.fidelity.describe()}" if runtime.fidelity else ""
    log.info(
        "serving %s on %s: runtime %s%s, batch %d",
        scorer.version,
        scorer.clip.device,
        runtime.runtime,
        fidelity,
        scorer.batch_size,
    )
    return serving
