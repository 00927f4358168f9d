"""From a Label Studio project to a training set: human labels, optional pseudo-labels, embeddings, groups."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from labelstudio.images import ImageFetcher
from labelstudio.label_config import SoilingTags
from labelstudio.tasks import human_label
from models.frame_cache import CachedArrays, FrameCache
from models.frames import ImageDecodeError
from models.pipeline import SoilingPipeline
from training.frames import fetch_in_chunks, task_image
from training.grouping import assign_groups, dhash
from training.progress import JobProgress


class DatasetError(ValueError):
    pass


@dataclass
class Example:
    task: dict
    label: int | None  # 1 dirty, 0 clean, None unlabelled
    weight: float = 1.0
    source: str = "human"


@dataclass
class TrainingSet:
    examples: list[Example]
    embeddings: np.ndarray
    p_zero_shot: np.ndarray
    groups: list[str]
    pixels: Sequence[np.ndarray] | None = None  # frames read from the frame cache on access (CachedArrays)
    thumbnails: list[bytes] | None = None
    summary: dict = field(default_factory=dict)  # how the set was built: counts, unreadable frames

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples], dtype=int)

    @property
    def task_ids(self) -> list[int]:
        return [e.task["id"] for e in self.examples]

    @property
    def human(self) -> np.ndarray:
        return np.array([e.source == "human" for e in self.examples], dtype=bool)

    @property
    def weights(self) -> np.ndarray:
        return np.array([e.weight for e in self.examples], dtype=np.float32)


class EmbeddingRows:
    """Embeddings appended row by row into a memory-mapped temporary file (at most `capacity` rows): a project's
    vectors never sit twice in memory (as a list and stacked); `matrix()` maps the rows written."""

    def __init__(self, capacity: int):
        self.capacity, self.count = capacity, 0
        self._rows: np.memmap | None = None

    def append(self, vector: np.ndarray) -> None:
        if self._rows is None:
            with tempfile.TemporaryFile(prefix="lensguard-embeddings-") as backing:  # the map outlives the file
                self._rows = np.memmap(backing, np.float32, "w+", shape=(max(self.capacity, 1), vector.shape[-1]))
        self._rows[self.count] = vector
        self.count += 1

    def matrix(self) -> np.ndarray:
        return self._rows[: self.count] if self._rows is not None else np.zeros((0, 0), np.float32)


def thumbnail(data: bytes, width: int, max_pixels: int) -> bytes:
    """A small JPEG of the whole frame, for reports."""
    image = Image.open(io.BytesIO(data))
    if image.width * image.height > max_pixels:
        raise ImageDecodeError("image over the pixel limit")
    image.draft("RGB", (width, width))
    image = image.convert("RGB")
    image.thumbnail((width, width))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def build_training_set(
    tasks: list[dict],
    tags: SoilingTags,
    pipeline: SoilingPipeline,
    fetcher: ImageFetcher,
    progress: JobProgress,
    pseudo_labels: tuple[float, float, float] | None = None,
    pixel_size: int | None = None,
    thumbnail_size: int | None = None,
    vlm_pseudo_labels: dict[int, tuple[int, float]] | None = None,
    frame_cache: FrameCache | None = None,
) -> TrainingSet:
    """`pseudo_labels` = (low, high, weight): unlabelled frames with zero-shot P(dirty) outside [low, high].
    `vlm_pseudo_labels`: task id -> (label, weight) from the VLM's confident verdicts; they come first.
    `pixel_size`: frames decoded at that size into `frame_cache` (required then), read back on access.
    Images are fetched a chunk at a time and embeddings go into a disk-backed matrix: memory holds one chunk's
    bytes, not the project's."""
    if pixel_size and frame_cache is None:
        raise ValueError("pixels are decoded into a frame cache: pass frame_cache")
    vlm_pseudo_labels = vlm_pseudo_labels or {}
    candidates = []
    for task in tasks:
        label = human_label(task, tags)
        if label is not None or pseudo_labels or task.get("id") in vlm_pseudo_labels:
            candidates.append(Example(task, label))
    report = {"tasks": len(tasks), "human_labels": sum(e.label is not None for e in candidates)}
    progress.stage("fetching and embedding frames", total=len(candidates))
    kept: list[Example] = []
    vectors = EmbeddingRows(len(candidates))
    hashes, pixels, thumbnails, failures = [], [], [], []
    for chunk in fetch_in_chunks(fetcher, candidates, lambda e: task_image(e.task, tags.image_key), progress):
        readable = [(e, b) for e, b in chunk if isinstance(b, bytes)]
        failures += [f"task {e.task.get('id')}: {b}" for e, b in chunk if isinstance(b, Exception)]
        embedded = pipeline.embed([b for _, b in readable])
        for (example, data), vector in zip(readable, embedded, strict=True):
            if isinstance(vector, Exception):
                failures.append(f"task {example.task.get('id')}: {vector}")
                continue
            try:  # all or nothing per frame, so that the lists stay aligned
                path = frame_cache.frame(data, (pixel_size, pixel_size), pipeline.max_pixels) if pixel_size else None
                small = thumbnail(data, thumbnail_size, pipeline.max_pixels) if thumbnail_size else None
                digest = dhash(data)
            except (ImageDecodeError, OSError) as exc:
                failures.append(f"task {example.task.get('id')}: {exc}")
                continue
            pixels.append(path)
            thumbnails.append(small)
            hashes.append(digest)
            kept.append(example)
            vectors.append(vector)
    if not kept:
        raise DatasetError("no labelled frame could be read")
    embeddings = vectors.matrix()
    p_zero_shot = np.array([r.p_dirty for r in pipeline.scorer.score(embeddings)])
    for example in kept:
        if example.label is None and example.task.get("id") in vlm_pseudo_labels:
            example.label, example.weight = vlm_pseudo_labels[example.task["id"]]
            example.source = "vlm-pseudo"
    if pseudo_labels:
        low, high, weight = pseudo_labels
        for example, p in zip(kept, p_zero_shot, strict=True):
            if example.label is None and (p <= low or p >= high):
                example.label, example.weight, example.source = int(p >= high), weight, "pseudo"
    use = [i for i, e in enumerate(kept) if e.label is not None]
    report |= {
        "pseudo_labels": sum(kept[i].source == "pseudo" for i in use),
        "vlm_pseudo_labels": sum(kept[i].source == "vlm-pseudo" for i in use),
        "unreadable": len(failures),
        "unreadable_examples": failures[:20],
    }
    examples = [kept[i] for i in use]
    return TrainingSet(
        examples=examples,
        embeddings=embeddings[use],
        p_zero_shot=p_zero_shot[use],
        groups=assign_groups([e.task for e in examples], [hashes[i] for i in use]),
        pixels=CachedArrays([pixels[i] for i in use]) if pixel_size else None,
        thumbnails=[thumbnails[i] for i in use] if thumbnail_size else None,
        summary=report,
    )
