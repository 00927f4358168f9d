"""Model versions per project and kind, written atomically, with one active (promoted) version each.

Layout: <root>/project-<id>/<kind>/<version>/{model files, config.json, metrics.json, report.png}
and <root>/project-<id>/<kind>/active.json naming the active version. A version directory is built under a
temporary name and renamed into place; active.json is replaced atomically: a process killed at any moment
leaves either no version or a complete one, and the active pointer always names a complete version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

COMPLETE_MARKER = "config.json"


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    project: str
    kind: str
    name: str
    path: Path

    @property
    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    @property
    def metrics(self) -> dict:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}


def version_name(kind: str, content: bytes, when: datetime | None = None) -> str:
    """`<kind>-<yyyymmdd-hhmmss>-<short hash>`."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{hashlib.sha256(content).hexdigest()[:6]}"


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ModelRegistry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _kind_dir(self, project: str | int, kind: str) -> Path:
        return self.root / f"project-{project}" / kind

    def version_path(self, project: str | int, kind: str, name: str) -> Path:
        """Where a version lives once written (while it is written, its files are in a staging folder)."""
        return self._kind_dir(project, kind) / name

    def write_version(
        self, project: str | int, kind: str, name: str, write: Callable[[Path], dict], metrics: dict
    ) -> ModelVersion:
        """`write(tmp_dir)` saves the model files and returns the config; the version appears whole or not."""
        kind_dir = self._kind_dir(project, kind)
        kind_dir.mkdir(parents=True, exist_ok=True)
        final = kind_dir / name
        if final.exists():
            raise RegistryError(f"version {name} exists already")
        owner = f"@{socket.gethostname()}~{os.getpid()}@"
        staging = Path(tempfile.mkdtemp(dir=kind_dir, prefix=f".staging-{name}-{owner}"))
        try:
            config = write(staging)
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
            (staging / COMPLETE_MARKER).write_text(json.dumps({**config, "version": name, "kind": kind}, indent=2))
            for file in staging.iterdir():
                with file.open("rb") as handle:
                    os.fsync(handle.fileno())
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelVersion(str(project), kind, name, final)

    def versions(self, project: str | int, kind: str) -> list[ModelVersion]:
        kind_dir = self._kind_dir(project, kind)
        if not kind_dir.is_dir():
            return []
        return [
            ModelVersion(str(project), kind, path.name, path)
            for path in sorted(kind_dir.iterdir())
            if path.is_dir() and not path.name.startswith(".") and (path / COMPLETE_MARKER).is_file()
        ]

    def active_pointer(self, project: str | int, kind: str) -> Path:
        return self._kind_dir(project, kind) / "active.json"

    def active(self, project: str | int, kind: str) -> ModelVersion | None:
        pointer = self.active_pointer(project, kind)
        try:
            name = json.loads(pointer.read_text())["version"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None
        path = self._kind_dir(project, kind) / name
        if not (path / COMPLETE_MARKER).is_file():
            return None
        return ModelVersion(str(project), kind, name, path)

    def promote(self, version: ModelVersion, reason: str) -> None:
        _write_json_atomic(
            self.active_pointer(version.project, version.kind),
            {"version": version.name, "promoted_at": datetime.now(UTC).isoformat(), "reason": reason},
        )

    def read_project_file(self, project: str | int, name: str) -> dict | None:
        """A project-level JSON record (the frozen evaluation set, the served classifier), or None."""
        try:
            return json.loads((self.root / f"project-{project}" / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_project_file(self, project: str | int, name: str, data: dict) -> None:
        """Replaces the record atomically: readers see the old one or the new one, never a part."""
        _write_json_atomic(self.root / f"project-{project}" / name, data)

    def project_file_stamp(self, project: str | int, name: str) -> int | None:
        """Changes whenever the record is replaced (for readers that cache what it says)."""
        try:
            return (self.root / f"project-{project}" / name).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def clean_staging(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove leftovers of writers killed mid-write: dead processes of this host, or anything stale."""
        removed = 0
        host = socket.gethostname()
        for staging in self.root.glob("project-*/*/.staging-*"):
            owner = re.search(r"@(.+)~(\d+)@", staging.name)
            dead_here = owner is not None and owner[1] == host and not _alive(int(owner[2]))
            if dead_here or time.time() - staging.stat().st_mtime > max_age_seconds:
                shutil.rmtree(staging, ignore_errors=True)
                removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
