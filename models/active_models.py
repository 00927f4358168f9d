"""The serving side's view of the registry: each project's active versions, reloaded when a promotion happens."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from models.registry import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)
T = TypeVar("T")


class ActiveModels(Generic[T]):
    """The first kind with an active version that `accept`s, loaded once per promotion. Kinds are tried in the
    order `preferred(project)` gives (e.g. the kind that was best on the project's evaluation set), then in
    the configured order."""

    def __init__(
        self,
        registry: ModelRegistry,
        kinds: Sequence[str],
        load: Callable[[ModelVersion], T],
        accept: Callable[[ModelVersion], bool] = lambda version: True,
        preferred: Callable[[str], str | None] = lambda project: None,
    ):
        self.registry = registry
        self.kinds = tuple(kinds)
        self.load = load
        self.accept = accept
        self.preferred = preferred
        self._loaded: dict[tuple[str, str], tuple[int, ModelVersion, T]] = {}
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
        try:
            mtime = self.registry.active_pointer(project, kind).stat().st_mtime_ns
        except FileNotFoundError:
            return None
        key = (project, kind)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is not None and cached[0] == mtime:
                return cached[1], cached[2]
            version = self.registry.active(project, kind)
            if version is None or not self.accept(version):
                return None
            loaded = self.load(version)
            log.info("project %s now serves %s", project, version.name)
            self._loaded[key] = (mtime, version, loaded)
            return version, loaded
