"""Model versions per project and kind, written atomically, with one active (promoted) version each.

Layout: <root>/project-<id>/<kind>/<version>/{model files, config.json, metrics.json, report.png}
and <root>/project-<id>/<kind>/active.json naming the active version. A version directory is built under a
temporary name and renamed into place; active.json is replaced atomically: a process killed at any moment
leaves either no version or a complete one, and the active pointer always names a complete version.

`open_registry` gives this local registry for a directory and `ObjectStoreRegistry` (same layout, same
guarantees) for an fsspec URL such as `s3://bucket/prefix`.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

COMPLETE_MARKER = "config.json"
POINTER = "active.json"
PROMOTION_TRIES = 20


class RegistryError(RuntimeError):
    pass


class PromotionConflict(RegistryError):
    """The active version changed since the caller compared against it; nothing was promoted."""


class PointerChanged(Exception):
    """A conditional pointer write lost against another writer (internal: promote re-reads and retries)."""


class Unconditional(enum.Enum):
    ANY = "any"


ANY = Unconditional.ANY


@dataclass(frozen=True)
class ModelVersion:
    project: str
    kind: str
    name: str
    path: Path  # a local directory with the version's files (for an object store: its local cache)

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


def pointer_record(version: ModelVersion, reason: str) -> dict:
    return {"version": version.name, "promoted_at": datetime.now(UTC).isoformat(), "reason": reason}


def parse_pointer(data: bytes | None) -> str | None:
    try:
        return json.loads(data)["version"] if data is not None else None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _write_json_atomic(path: Path, data: dict | list) -> None:
    _write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def staging_owner() -> str:
    """Marks a staging folder with this host and process, so a later worker knows when its writer died."""
    return f"@{socket.gethostname()}~{os.getpid()}@"


def stage_version(parent: Path, name: str, kind: str, write: Callable[[Path], dict], metrics: dict) -> Path:
    """A complete version folder under a temporary name in `parent`: `write`'s files, metrics, the marker last."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".staging-{name}-{staging_owner()}"))
    try:
        config = write(staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (staging / COMPLETE_MARKER).write_text(json.dumps({**config, "version": name, "kind": kind}, indent=2))
        for file in staging.rglob("*"):
            if file.is_file():
                with file.open("rb") as handle:
                    os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def remove_dead_staging(folders: Iterator[Path], max_age_seconds: float) -> int:
    """Remove staging folders of dead processes of this host, or stale ones."""
    removed = 0
    host = socket.gethostname()
    for staging in folders:
        owner = re.search(r"@(.+)~(\d+)@", staging.name)
        dead_here = owner is not None and owner[1] == host and not _alive(int(owner[2]))
        if dead_here or time.time() - staging.stat().st_mtime > max_age_seconds:
            shutil.rmtree(staging, ignore_errors=True)
            removed += 1
    return removed


class Registry(ABC):
    """What training and serving use; subclasses store versions and the active pointer somewhere.

    Promotion is a compare-and-swap on the pointer: `_read_pointer` gives its content with a token, and
    `_write_pointer` replaces it only if the token still holds (else raises PointerChanged).
    """

    poll_seconds: float = 0.0  # how often serving should look at the pointer at most

    @abstractmethod
    def write_version(
        self, project: str | int, kind: str, name: str, write: Callable[[Path], dict], metrics: dict
    ) -> ModelVersion: ...

    @abstractmethod
    def versions(self, project: str | int, kind: str) -> list[ModelVersion]: ...

    @abstractmethod
    def pointer_stamp(self, project: str | int, kind: str) -> Hashable | None:
        """Changes whenever the active pointer is rewritten; None when there is none. Cheap: serving polls it."""

    @abstractmethod
    def clean_staging(self, max_age_seconds: float = 24 * 3600) -> int: ...

    @abstractmethod
    def read_kind_file(self, project: str | int, kind: str, filename: str) -> bytes | None:
        """A file kept next to the versions of a kind (e.g. the learning curve); None when absent."""

    @abstractmethod
    def write_kind_file(self, project: str | int, kind: str, filename: str, data: bytes) -> None: ...

    @abstractmethod
    def read_project_file(self, project: str | int, name: str) -> dict | None:
        """A project-level JSON record (the frozen evaluation set, the served classifier), or None."""

    @abstractmethod
    def write_project_file(self, project: str | int, name: str, data: dict) -> None:
        """Replaces the record whole: readers see the old one or the new one, never a part."""

    @abstractmethod
    def has_version(self, project: str | int, kind: str, name: str) -> bool: ...

    @abstractmethod
    def version_location(self, project: str | int, kind: str, name: str) -> str:
        """Where a version lives once written, for people (a path or a URL)."""

    @abstractmethod
    def _read_pointer(self, project: str, kind: str) -> tuple[bytes | None, Hashable | None]: ...

    @abstractmethod
    def _write_pointer(self, project: str, kind: str, data: bytes, token: Hashable | None) -> None: ...

    @abstractmethod
    def _complete_version(self, project: str, kind: str, name: str) -> ModelVersion | None:
        """The version if it is complete (its marker exists), with its files available locally."""

    def active(self, project: str | int, kind: str) -> ModelVersion | None:
        name = parse_pointer(self._read_pointer(str(project), kind)[0])
        if name is None or "/" in name or name.startswith("."):
            return None
        return self._complete_version(str(project), kind, name)

    def promote(self, version: ModelVersion, reason: str, expected: str | Unconditional | None = ANY) -> None:
        """Make `version` the active one. With `expected` (the version name the caller compared against, None
        for "no active version"), only if the pointer still names it: else PromotionConflict, and nothing
        changes. The check and the write are one atomic step against concurrent promoters."""
        data = json.dumps(pointer_record(version, reason), indent=2, sort_keys=True).encode()
        for _ in range(PROMOTION_TRIES):
            current, token = self._read_pointer(version.project, version.kind)
            if expected is not ANY and parse_pointer(current) != expected:
                raise PromotionConflict(
                    f"{version.kind} of project {version.project}: active is {parse_pointer(current)}, "
                    f"not {expected}; {version.name} not promoted"
                )
            try:
                self._write_pointer(version.project, version.kind, data, token)
                return
            except PointerChanged:
                continue
        raise PromotionConflict(f"{version.name}: the active pointer kept changing; not promoted")


class ModelRegistry(Registry):
    """The registry in a local (or shared POSIX) directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _kind_dir(self, project: str | int, kind: str) -> Path:
        return self.root / f"project-{project}" / kind

    def has_version(self, project: str | int, kind: str, name: str) -> bool:
        return (self._kind_dir(project, kind) / name).exists()  # whole or absent: written by one rename

    def version_location(self, project: str | int, kind: str, name: str) -> str:
        return str(self._kind_dir(project, kind) / name)

    def write_version(
        self, project: str | int, kind: str, name: str, write: Callable[[Path], dict], metrics: dict
    ) -> ModelVersion:
        """`write(tmp_dir)` saves the model files and returns the config; the version appears whole or not."""
        kind_dir = self._kind_dir(project, kind)
        final = kind_dir / name
        if final.exists():
            raise RegistryError(f"version {name} exists already")
        staging = stage_version(kind_dir, name, kind, write, metrics)
        try:
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
        return self._kind_dir(project, kind) / POINTER

    def pointer_stamp(self, project: str | int, kind: str) -> Hashable | None:
        try:
            stat = self.active_pointer(project, kind).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size  # a replace makes a new inode

    def _complete_version(self, project: str, kind: str, name: str) -> ModelVersion | None:
        path = self._kind_dir(project, kind) / name
        return ModelVersion(project, kind, name, path) if (path / COMPLETE_MARKER).is_file() else None

    def _read_pointer(self, project: str, kind: str) -> tuple[bytes | None, Hashable | None]:
        pointer = self.active_pointer(project, kind)
        token = self.pointer_stamp(project, kind)
        try:
            return pointer.read_bytes(), token
        except FileNotFoundError:
            return None, token

    def _write_pointer(self, project: str, kind: str, data: bytes, token: Hashable | None) -> None:
        with self._locked(project, kind):
            if self.pointer_stamp(project, kind) != token:
                raise PointerChanged
            _write_bytes_atomic(self.active_pointer(project, kind), data)

    @contextlib.contextmanager
    def _locked(self, project: str, kind: str) -> Iterator[None]:
        """An exclusive lock for pointer updates (flock: every process and thread on this machine; NFS with
        working locks too)."""
        path = self._kind_dir(project, kind) / ".active.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_kind_file(self, project: str | int, kind: str, filename: str) -> bytes | None:
        try:
            return (self._kind_dir(project, kind) / filename).read_bytes()
        except FileNotFoundError:
            return None

    def write_kind_file(self, project: str | int, kind: str, filename: str, data: bytes) -> None:
        _write_bytes_atomic(self._kind_dir(project, kind) / filename, data)

    def read_project_file(self, project: str | int, name: str) -> dict | None:
        try:
            return json.loads((self.root / f"project-{project}" / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_project_file(self, project: str | int, name: str, data: dict) -> None:
        _write_json_atomic(self.root / f"project-{project}" / name, data)

    def clean_staging(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove leftovers of writers killed mid-write: dead processes of this host, or anything stale."""
        return remove_dead_staging(self.root.glob("project-*/*/.staging-*"), max_age_seconds)


def open_registry(
    location: str | Path,
    storage_options: dict | None = None,
    cache_dir: str | Path | None = None,
    poll_seconds: float = 5.0,
) -> Registry:
    """A directory (or file:// URL) gives the local registry; any other fsspec URL (s3://bucket/prefix, ...)
    the object-store registry, which downloads the versions it serves into `cache_dir` and whose pointer
    serving polls every `poll_seconds`."""
    text = str(location)
    if "://" not in text or text.startswith("file://"):
        return ModelRegistry(text.removeprefix("file://"))
    from models.object_store_registry import ObjectStoreRegistry

    return ObjectStoreRegistry(text, storage_options or {}, cache_dir, poll_seconds)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
