"""What serving would say about frames, for jobs that judge something next to it: zero-shot with the project's
promoted prompt set, combined with the classifier that serves (the kind best on the frozen set, else the first
active one in LENSGUARD_SERVE_KINDS)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from models.active_models import ActiveModels
from models.kinds import load_version
from models.pipeline import SoilingPipeline
from models.verdict import Verdict
from models.zero_shot import load_prompt_set, shared_zero_shot_scorer
from models.zero_shot.prompts import PROMPTS_FILE, PROMPTS_KIND
from serving.components import same_encoder, served_kind, zero_shot_config
from serving.resources import process_embedding_cache
from settings import Settings, open_model_registry

ServedScore = Callable[[Sequence[bytes], Sequence[str]], list[Verdict | Exception]]


def served_scorer(pipeline: SoilingPipeline, settings: Settings, project_id: int) -> tuple[ServedScore, str | None]:
    """(images, type labels) -> one verdict (or the error that stopped it) per image; and the serving
    classifier's name (None: zero-shot alone). The models are loaded once, here, chosen as serving chooses."""
    registry = open_model_registry(settings)
    prompts = registry.active(project_id, PROMPTS_KIND)
    scorer = pipeline.scorer.with_prompt_set(load_prompt_set(prompts.path / PROMPTS_FILE)) if prompts else None
    classifiers = ActiveModels(
        registry,
        settings.serve_kinds,
        lambda version: load_version(version, settings.device),
        partial(same_encoder, encoder=pipeline.scorer.encoder_identity),
        partial(served_kind, registry),
        poll_seconds=0,
    )
    active = classifiers.get(str(project_id))
    classifier, name = (active[1], f"{active[0].kind} {active[0].name}") if active else (None, None)
    return partial(_score, pipeline, classifier, settings.combine, scorer), name


def served_pipeline(settings: Settings) -> SoilingPipeline:
    """Zero-shot scoring as served, on the process's embedding cache."""
    scorer = shared_zero_shot_scorer(zero_shot_config(settings))
    return SoilingPipeline(scorer, process_embedding_cache(settings), settings.max_image_pixels)


def _score(pipeline, classifier, mode, scorer, images, type_labels) -> list[Verdict | Exception]:
    return pipeline.score(images, type_labels, classifier, mode, scorer)
