"""The serving side's view of the registry: each project's active classifier, reloaded when promotion happens."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from models.classifier import Classifier, load_classifier
from models.registry import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)


class ActiveClassifiers:
    def __init__(self, registry: ModelRegistry, kinds: Sequence[str], encoder: str, device: str = "auto"):
        self.registry = registry
        self.kinds = tuple(kinds)  # preference order
        self.encoder = encoder
        self.device = device
        self._loaded: dict[tuple[str, str], tuple[float, ModelVersion, Classifier] | None] = {}
        self._lock = threading.Lock()

    def get(self, project: str | None) -> tuple[ModelVersion, Classifier] | None:
        if not project:
            return None
        for kind in self.kinds:
            found = self._current(project, kind)
            if found is not None:
                return found
        return None

    def _current(self, project: str, kind: str) -> tuple[ModelVersion, Classifier] | None:
        pointer = self.registry.active_pointer(project, kind)
        try:
            mtime = pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        key = (project, kind)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is not None and cached[0] == mtime:
                return cached[1], cached[2]
            version = self.registry.active(project, kind)
            if version is None:
                return None
            if version.config.get("encoder", self.encoder) != self.encoder:
                log.warning(
                    "%s was trained on %s embeddings, serving %s: not used",
                    version.name,
                    version.config.get("encoder"),
                    self.encoder,
                )
                return None
            classifier = load_classifier(version, self.device)
            log.info("project %s now serves %s", project, version.name)
            self._loaded[key] = (mtime, version, classifier)
            return version, classifier
