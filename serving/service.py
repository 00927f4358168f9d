"""The serving core, shared by the HTTP app and the workers: tasks -> image URLs -> bytes -> verdicts ->
Label Studio predictions."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labelstudio.images import ImageFetcher, ImageFetchError
from labelstudio.label_config import SoilingTags, parse_soiling_config
from labelstudio.regions import add_dirt_mask, add_vlm_answer, note_random_weights, prediction_for
from labelstudio.tasks import TaskError, image_url, metadata_group
from models.active_models import ActiveModels
from models.clusters import embedding_clusters, group_cluster
from models.coverage_stack import in_band
from models.frames import ImageDecodeError, image_size, resize_mask
from models.pipeline import Prepared, SoilingPipeline
from models.verdict import CombineMode, Verdict
from serving.vlm import VlmCascade, VlmMode

log = logging.getLogger(__name__)
ERROR_CAUSES = {TaskError: "no_image_url", ImageFetchError: "fetch", ImageDecodeError: "decode"}


def error_cause(error: Exception) -> str:
    """A short label for why a task got no prediction (the /metrics label)."""
    return next((cause for kind, cause in ERROR_CAUSES.items() if isinstance(error, kind)), "other")


@dataclass
class PreparedTasks:
    tasks: list[dict]
    tags: SoilingTags
    project: str | None
    outcomes: list[object]  # per task: bytes, then a verdict, or the exception that stopped it
    readable: list[int]
    prepared: Prepared
    prepare_seconds: float
    urls: list[str | None]  # per task: its image URL, if it has one


class PredictionService:
    def __init__(
        self,
        pipeline: SoilingPipeline,
        fetcher: ImageFetcher,
        type_threshold: float = 0.3,
        classifiers: ActiveModels | None = None,
        combine: CombineMode = CombineMode.AVERAGE,
        prompt_sets: ActiveModels | None = None,
        segmenters: ActiveModels | None = None,
        vlm: VlmCascade | None = None,
        coverage_grid: tuple[int, int] = (4, 4),
        predraw_band: float = 0.0,
        coverage_band: float = 0.0,
    ):
        self.pipeline = pipeline
        self.fetcher = fetcher
        self.type_threshold = type_threshold
        self.classifiers = classifiers
        self.combine = combine
        self.prompt_sets = prompt_sets
        self.segmenters = segmenters
        self.vlm = vlm
        self.coverage_grid = tuple(coverage_grid)  # cols, rows of the tile coverage served with masks
        self.predraw_band = predraw_band  # frames called clean with P(dirty) >= 0.5 - band get a mask too
        self.coverage_band = coverage_band  # P(dirty) within it of 0.5: the segmenter's coverage stacked in
        self._model_lock = threading.Lock()  # the segmenter: one frame batch at a time
        self.counters: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()  # time spent per stage: fetch, model, total
        self.errors: Counter[str] = Counter()  # tasks without a prediction, by cause

    def _active(self, project: str | None):
        return self.classifiers.get(project) if self.classifiers else None

    def scorer(self, project: str | None):
        """The zero-shot scorer with the project's promoted prompt set, or the default one."""
        chosen = self.prompt_sets.get(project) if self.prompt_sets else None
        return chosen[1] if chosen else self.pipeline.scorer

    def model_version(self, project: str | None = None) -> str:
        """Names everything that produced the predictions: the active classifier, if any, and zero-shot."""
        active = self._active(project)
        segmenter = self.segmenters.get(project) if self.segmenters else None
        parts = [
            active[0].name if active else None,
            self.scorer(project).version,
            segmenter[0].name if segmenter else None,
        ]
        return "+".join(p for p in parts if p)

    def _needs_mask(self, outcome: object) -> bool:
        if not isinstance(outcome, Verdict):
            return False
        return outcome.is_dirty or (self.predraw_band > 0 and outcome.p_dirty >= 0.5 - self.predraw_band)

    def _dirt_masks(self, batch: PreparedTasks) -> dict[int, tuple]:
        """Per dirty or uncertain frame: (mask at the image's size, coverage per class, tile coverage, whether
        the frame was called clean) from the project's active segmenter. Where the segmenter's version carries
        an enabled coverage stacker, frames in the coverage band are segmented too and their verdicts replaced
        by the stacked ones (in `batch.outcomes`) before masks are chosen by the final verdicts."""
        active = self.segmenters.get(batch.project) if self.segmenters else None
        if active is None:
            return {}
        version, segmenter = active
        stack = segmenter.coverage_stack
        image_of = dict(zip(batch.readable, batch.prepared.images, strict=True))

        def stacked(i: int) -> bool:
            outcome = batch.outcomes[i]
            return (
                stack is not None
                and isinstance(outcome, Verdict)
                and bool(in_band(outcome.p_dirty, self.coverage_band))
            )

        chosen = [i for i in batch.readable if self._needs_mask(batch.outcomes[i]) or stacked(i)]
        unfetched = [i for i in chosen if image_of[i] is None]  # embedding cached, frame not fetched
        for i, data in zip(unfetched, self.fetcher.fetch_many([batch.urls[i] for i in unfetched]), strict=True):
            image_of[i] = data
        chosen = [i for i in chosen if isinstance(image_of[i], bytes)]
        if not chosen:
            return {}
        with self._model_lock:
            predicted, tiles = segmenter.predict_with_coverage(
                self.pipeline.pixels([image_of[i] for i in chosen], segmenter.image_size), self.coverage_grid
            )
        masks = {}
        for i, small, tile, frame in zip(
            chosen, predicted, tiles, segmenter.frame_coverages(predicted, tiles), strict=True
        ):
            if stacked(i):
                batch.outcomes[i] = stack.verdict(batch.outcomes[i], frame, version.name)
            if self._needs_mask(batch.outcomes[i]):
                predrawn = not batch.outcomes[i].is_dirty
                masks[i] = (resize_mask(small, image_size(image_of[i])), frame, tile, predrawn)
        return masks

    @staticmethod
    def _clusters(batch: PreparedTasks) -> dict[int, int]:
        """Per task index: its named group's cluster, else its embedding's (see models.clusters)."""
        embedded = batch.prepared.embedded or []
        have = [(i, e) for i, e in zip(batch.readable, embedded, strict=False) if not isinstance(e, Exception)]
        found = (
            dict(zip((i for i, _ in have), embedding_clusters(np.stack([e for _, e in have])).tolist(), strict=True))
            if have
            else {}
        )
        for index, task in enumerate(batch.tasks):
            group = metadata_group(task)
            if group is not None:
                found[index] = group_cluster(group)
        return found

    def _vlm_answers(self, batch: PreparedTasks, mode: VlmMode) -> dict:
        """Task index -> the VLM's answer, for the band frames the cascade sent and got answered."""
        if self.vlm is None:
            return {}
        verdicts = [batch.outcomes[i] for i in batch.readable]
        images = batch.prepared.images
        found = self.vlm.answers(verdicts, images, batch.tags.type_labels, mode, self.pipeline.max_pixels)
        return {batch.readable[position]: answer for position, answer in found.items()}

    def predict(
        self,
        tasks: Sequence[dict],
        label_config: str,
        project: str | None = None,
        time_budget: float | None = None,
        chunk_size: int = 0,
    ) -> list[dict]:
        """One entry per task, in order: a prediction, or {"error": ...} for a task that could not be read.

        Tasks go through fetch and model `chunk_size` at a time (all at once for 0), so a request holds one
        chunk's images; tasks not reached within `time_budget` seconds get an error entry each."""
        parse_soiling_config(label_config)  # a bad config is the request's error, before any fetching
        deadline = time.monotonic() + time_budget if time_budget else None
        step = chunk_size or max(len(tasks), 1)
        predictions: list[dict] = []
        for start in range(0, len(tasks), step):
            batch = self.prepare(tasks[start : start + step], label_config, project, deadline)
            predictions += self.finish(batch, count_request=start + step >= len(tasks))
        return predictions

    def prepare(
        self,
        tasks: Sequence[dict],
        label_config: str,
        project: str | None = None,
        deadline: float | None = None,
        reuse_cached: bool = False,
    ) -> PreparedTasks:
        """Fetch and decode (threads, no model): a batch job runs this for the next batch during inference.

        `reuse_cached` (batch jobs): frames whose URL's last fetched bytes have a cached embedding are not
        fetched, unless the served classifier reads pixels; a segmenter fetches the frames it masks later."""
        started = time.perf_counter()
        tags = parse_soiling_config(label_config)
        outcomes: list[object] = []
        for task in tasks:
            try:
                outcomes.append(image_url(task, tags))
            except TaskError as exc:
                outcomes.append(exc)
        urls = [o if isinstance(o, str) else None for o in outcomes]
        known = self._cached_urls([u for u in urls if u], project) if reuse_cached else {}
        wanted = [i for i, o in enumerate(outcomes) if isinstance(o, str) and o not in known]
        fetched = self.fetcher.fetch_many(
            [outcomes[i] for i in wanted], [_task_id(tasks[i]) for i in wanted], project, deadline
        )
        for i, image in zip(wanted, fetched, strict=True):
            outcomes[i] = image
        for i, url in enumerate(urls):
            if url in known:
                outcomes[i] = None  # not fetched: the embedding is cached
        readable = [i for i, o in enumerate(outcomes) if isinstance(o, bytes) or o is None]
        prepared = self.pipeline.prepare([outcomes[i] for i in readable], [known.get(urls[i]) for i in readable])
        if self.pipeline.cache is not None:
            fresh = {urls[i]: h for i, h in zip(readable, prepared.hashes, strict=True) if outcomes[i] is not None}
            self.pipeline.cache.remember_urls(fresh)
        self.seconds["fetch"] += time.perf_counter() - started
        elapsed = time.perf_counter() - started
        return PreparedTasks(list(tasks), tags, project, outcomes, readable, prepared, elapsed, urls)

    def _cached_urls(self, urls: list[str], project: str | None) -> dict[str, str]:
        """url -> content hash of the frames that need not be fetched (see `prepare`)."""
        active = self._active(project)
        if self.pipeline.cache is None or (active is not None and active[1].needs != "embeddings"):
            return {}
        return self.pipeline.cache.hashes_for_urls(self.pipeline.scorer.encoder_identity, urls)

    def finish(
        self,
        batch: PreparedTasks,
        count_request: bool = True,
        vlm_mode: VlmMode = VlmMode.BUDGET,
        vlm_answers: dict | None = None,
    ) -> list[dict]:
        """`vlm_mode`: whether the VLM cascade answers the batch's band frames (see VlmMode); `vlm_answers`, when
        given, receives task id -> the VLM's answer."""
        started = time.perf_counter()
        project, tags, outcomes = batch.project, batch.tags, batch.outcomes
        active = self._active(project)
        version = self.model_version(project)
        # No lock: the image encoder's dynamic batcher lets concurrent requests share its batches.
        scores = self.pipeline.score(
            batch.prepared, tags.type_labels, active[1] if active else None, self.combine, self.scorer(project)
        )
        self.seconds["model"] += time.perf_counter() - started
        for i, score in zip(batch.readable, scores, strict=True):
            outcomes[i] = score
        answers = self._vlm_answers(batch, vlm_mode)
        if vlm_answers is not None:
            vlm_answers.update({batch.tasks[i].get("id"): answer for i, answer in answers.items()})
        for index, answer in answers.items():
            outcomes[index] = self.vlm.combine(outcomes[index], answer)
        masks = self._dirt_masks(batch) if tags.brush else {}
        clusters = self._clusters(batch)
        random_weights = self.pipeline.scorer.clip.random_weights
        predictions = []
        for index, (task, outcome) in enumerate(zip(batch.tasks, outcomes, strict=True)):
            if isinstance(outcome, Exception):
                log.warning("task %s: %s", task.get("id"), str(outcome).encode("unicode_escape").decode())
                self.counters["tasks_failed"] += 1
                self.errors[error_cause(outcome)] += 1
                predictions.append({"task": task.get("id"), "error": str(outcome), "model_version": version})
                continue
            answer = answers.get(index)
            prediction = prediction_for(
                tags, outcome, self.vlm.version(version) if answer else version, self.type_threshold
            )
            if answer is not None:
                add_vlm_answer(prediction, answer)
            if index in masks:
                add_dirt_mask(prediction, tags, *masks[index])
            if random_weights:
                note_random_weights(prediction)
            if task.get("id") is not None:
                prediction["task"] = task["id"]
            if index in clusters:
                prediction["cluster"] = clusters[index]
            predictions.append(prediction)
            self.counters["tasks_predicted"] += 1
        self.counters["predict_requests"] += int(count_request)
        self.seconds["total"] += batch.prepare_seconds + time.perf_counter() - started
        return predictions


def _task_id(task: dict) -> int | None:
    found = task.get("id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None
