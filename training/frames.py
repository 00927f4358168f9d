"""Task images fetched a chunk at a time: never a whole project's bytes in memory, progress after each chunk."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from labelstudio.images import ImageFetcher
from models.frame_cache import FrameCache
from settings import Settings
from training.progress import JobProgress

FETCH_CHUNK = 64
Item = TypeVar("Item")
log = logging.getLogger(__name__)


def task_image(task: dict, image_key: str) -> str:
    """The task's image URL, or "" (which the fetcher reports as a task without an image)."""
    url = (task.get("data") or {}).get(image_key)
    return url if isinstance(url, str) else ""


def fetch_in_chunks(
    fetcher: ImageFetcher,
    items: Sequence[Item],
    url_of: Callable[[Item], str],
    progress: JobProgress | None = None,
    chunk: int = FETCH_CHUNK,
) -> Iterator[list[tuple[Item, bytes | Exception]]]:
    """Per chunk of `items`: each item with its image bytes, or the error that kept them from being fetched."""
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        yield list(zip(part, fetcher.fetch_many([url_of(item) for item in part]), strict=True))
        if progress is not None:
            progress.update(advance=len(part))


def project_frame_cache(settings: Settings, project_id: int | str) -> FrameCache:
    """The project's decoded-frame cache, without the temporaries of writers killed over an hour ago."""
    cache = FrameCache(settings.frame_cache_path(project_id))
    cache.sweep()
    return cache


def trim_frame_cache(cache: FrameCache, in_use: Iterable[Path], settings: Settings) -> None:
    """Least recently used frames out beyond `LENSGUARD_FRAME_CACHE_MAX_GB`, never those of this run."""
    removed = cache.evict(int(settings.frame_cache_max_gb * 1024**3), keep=set(in_use))
    if removed:
        log.info("frame cache %s: %d least recently used files removed", cache.root, removed)
