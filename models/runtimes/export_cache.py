"""Exported models on disk, keyed by the weights' digest: a file never outlives the weights it came from.

`<root>/<model>-<digest16>-<artefact>`; writing one removes the same model's files for other digests. Files
are written to a temporary name and renamed, under a lock, so concurrent processes never read half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


class ExportCache:
    def __init__(self, root: str | Path, model_name: str, digest: str):
        self.root = Path(root)
        self.model = slug(model_name)
        self.digest = digest[:16]
        self.hits = 0
        self.builds = 0

    def path(self, artefact: str) -> Path:
        return self.root / f"{self.model}-{self.digest}-{artefact}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.model}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure(self, artefact: str, build: Callable[[Path], None]) -> Path:
        """The artefact's path, building it first (`build(tmp_path)` writes it) when it is not cached."""
        target = self.path(artefact)
        with self._locked():
            if target.exists():
                self.hits += 1
                return target
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            try:
                build(Path(tmp))
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self.builds += 1
            self._prune()
        return target

    def _prune(self) -> None:
        """Remove this model's artefacts built from other weights."""
        pattern = re.compile(rf"^{re.escape(self.model)}-([0-9a-f]{{16}})-")
        for path in self.root.iterdir():
            match = pattern.match(path.name)
            if match and match.group(1) != self.digest:
                path.unlink(missing_ok=True)
