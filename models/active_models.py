"""The serving side's view of the registry: each project's active versions, reloaded when a promotion happens."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from models.registry import ModelVersion, Registry

log = logging.getLogger(__name__)
T = TypeVar("T")


class ActiveModels(Generic[T]):
    """The first kind with an active version that `accept`s, loaded once per promotion. Kinds are tried in the
    order `preferred(project)` gives (e.g. the kind that was best on the project's evaluation set), then in
    the configured order.

    The pointer's stamp (mtime locally, ETag on an object store) is read at most every `poll_seconds`
    (default: the registry's), so an object store sees one HEAD request per project and kind per interval.
    """

    def __init__(
        self,
        registry: Registry,
        kinds: Sequence[str],
        load: Callable[[ModelVersion], T],
        accept: Callable[[ModelVersion], bool] = lambda version: True,
        preferred: Callable[[str], str | None] = lambda project: None,
        poll_seconds: float | None = None,
    ):
        self.registry = registry
        self.kinds = tuple(kinds)
        self.load = load
        self.accept = accept
        self.preferred = preferred
        self.poll_seconds = registry.poll_seconds if poll_seconds is None else poll_seconds
        self._loaded: dict[tuple[str, str], tuple[Hashable, tuple[ModelVersion, T] | None]] = {}
        self._polled: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def get(self, project: str | None) -> tuple[ModelVersion, T] | None:
        if not project:
            return None
        first = self.preferred(project)
        for kind in sorted(self.kinds, key=lambda kind: kind != first):
            found = self._current(project, kind)
            if found is not None:
                return found
        return None

    def _current(self, project: str, kind: str) -> tuple[ModelVersion, T] | None:
        key = (project, kind)
        with self._lock:
            cached = self._loaded.get(key)
            now = time.monotonic()
            if key in self._polled and now - self._polled[key] < self.poll_seconds:
                return cached[1] if cached is not None else None
            self._polled[key] = now
            stamp = self.registry.pointer_stamp(project, kind)
            if stamp is None:
                self._loaded.pop(key, None)
                return None
            if cached is not None and cached[0] == stamp:
                return cached[1]
            version = self.registry.active(project, kind)
            if version is None or not self.accept(version):
                self._loaded[key] = (stamp, None)
                return None
            loaded = (version, self.load(version))
            log.info("project %s now serves %s", project, version.name)
            self._loaded[key] = (stamp, loaded)
            return loaded
