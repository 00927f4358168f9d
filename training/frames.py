"""Task images fetched a chunk at a time: never a whole project's bytes in memory, progress after each chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from labelstudio.images import ImageFetcher
from training.progress import JobProgress

FETCH_CHUNK = 64
Item = TypeVar("Item")


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
