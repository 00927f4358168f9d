"""What a process opens once and every job in it reuses: the image fetcher (its thread pool and HTTP client) and
the embedding-cache connection, one of each per configuration, closed when the process ends.

Safe across threads (jobs, a worker's heartbeat thread, serving's request threads): creation is under a lock, the
fetcher and the cache are thread-safe themselves. A forked child (a DataLoader worker, RQ's forking worker)
never uses its parent's objects (a SQLite connection must not cross a fork): it opens its own on first use."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from labelstudio.images import ImageFetcher
from labelstudio.tokens import LabelStudioAuth
from models.embedding_cache import EmbeddingCache
from settings import Settings

log = logging.getLogger(__name__)
Resource = TypeVar("Resource", ImageFetcher, EmbeddingCache)


def new_fetcher(settings: Settings) -> ImageFetcher:
    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    return ImageFetcher(
        settings.label_studio_url,
        LabelStudioAuth(settings.label_studio_url, key) if key else None,
        allowed_hosts=settings.allowed_image_hosts,
        max_bytes=settings.max_image_bytes,
        timeout=settings.image_fetch_timeout,
        threads=settings.fetch_threads,
        allowed_networks=settings.allowed_image_networks,
        per_request_threads=settings.fetch_threads_per_request,
    )


def fetcher_key(settings: Settings) -> tuple:
    """What makes two fetchers differ: settings that give the same key share one."""
    secret = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    return (
        settings.label_studio_url,
        secret,
        tuple(settings.allowed_image_hosts),
        tuple(settings.allowed_image_networks),
        settings.max_image_bytes,
        settings.image_fetch_timeout,
        settings.fetch_threads,
        settings.fetch_threads_per_request,
    )


class ProcessResources:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fetchers: dict[Hashable, ImageFetcher] = {}
        self._caches: dict[Path, EmbeddingCache] = {}

    def _forked(self) -> None:
        """In a forked child: forget (never close) the parent's objects."""
        if self._pid != os.getpid():
            self._pid, self._fetchers, self._caches = os.getpid(), {}, {}

    def _one(self, kind: str, key: Hashable, create: Callable[[], Resource], closed: Callable) -> Resource:
        with self._lock:
            self._forked()
            store = getattr(self, kind)
            found = store.get(key)
            if found is None or closed(found):
                found = store[key] = create()
            return found

    def fetcher(self, settings: Settings) -> ImageFetcher:
        return self._one("_fetchers", fetcher_key(settings), lambda: new_fetcher(settings), lambda f: f.closed)

    def embedding_cache(self, settings: Settings) -> EmbeddingCache:
        path = Path(settings.embedding_cache_path).resolve()
        return self._one("_caches", path, lambda: EmbeddingCache(path), lambda c: c.closed)

    def close(self) -> None:
        """Close everything this process opened (at exit; a later call opens fresh ones)."""
        with self._lock:
            if self._pid != os.getpid():
                self._forked()
                return
            opened = [*self._fetchers.values(), *self._caches.values()]
            self._fetchers, self._caches = {}, {}
        for resource in opened:
            try:
                resource.close()
            except Exception as exc:  # one failing close never keeps the others open
                log.warning("closing %s failed: %s", type(resource).__name__, exc)


PROCESS = ProcessResources()
atexit.register(PROCESS.close)


def process_fetcher(settings: Settings) -> ImageFetcher:
    """This process's image fetcher for `settings` (created on first use, shared by every job)."""
    return PROCESS.fetcher(settings)


def process_embedding_cache(settings: Settings) -> EmbeddingCache:
    """This process's connection to the embedding cache (created on first use, shared by every job)."""
    return PROCESS.embedding_cache(settings)


def close_process_resources() -> None:
    PROCESS.close()
