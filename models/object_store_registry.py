"""The model registry on object storage (any fsspec URL; S3 and S3-compatible stores such as MinIO first).

Same layout and guarantees as the local registry, without a shared filesystem between machines:

- A version is complete when its marker object (config.json) exists. A writer uploads every other file of the
  version first and the marker last (one PUT, atomic per object; on S3 with If-None-Match so two writers of
  the same version cannot both succeed). A writer killed mid-upload leaves objects without a marker: never
  listed, never served, overwritten by a retry, and removed by `clean_staging` once stale.
- Promotion is a compare-and-swap on `active.json`: read it with its ETag, then PUT with `If-Match: <etag>`
  (`If-None-Match: *` when there is none). S3 (since 2024-11), MinIO and moto honour both. A store that
  answers 501 NotImplemented to a conditional PUT, and every non-S3 fsspec backend, gets a best effort
  instead: re-read the pointer, write only if unchanged, re-read to check the write stuck (a race window of
  one round trip remains; logged once).
- Versions are downloaded into a local cache folder keyed by version name (versions never change once
  complete), through a temporary folder renamed into place, so concurrent readers never see half a copy.
- `pointer_stamp` is the pointer's ETag (or mtime), one HEAD request; serving polls it every `poll_seconds`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path

import fsspec
from fsspec.asyn import sync

from models.registry import (
    COMPLETE_MARKER,
    POINTER,
    ModelVersion,
    PointerChanged,
    Registry,
    RegistryError,
    remove_dead_staging,
    stage_version,
)

log = logging.getLogger(__name__)
CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class ObjectStoreRegistry(Registry):
    def __init__(
        self,
        url: str,
        storage_options: dict | None = None,
        cache_dir: str | Path | None = None,
        poll_seconds: float = 5.0,
    ):
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = self.root.rstrip("/")
        self.poll_seconds = poll_seconds
        self._s3 = "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self._conditional = self._s3
        base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "lensguard-model-cache"
        self.cache_dir = base / hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def _kind_path(self, project: str | int, kind: str) -> str:
        return f"{self.root}/project-{project}/{kind}"

    def _local_kind_dir(self, project: str | int, kind: str) -> Path:
        return self.cache_dir / f"project-{project}" / kind

    def _exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return self.fs.exists(path)

    def write_version(
        self, project: str | int, kind: str, name: str, write: Callable[[Path], dict], metrics: dict
    ) -> ModelVersion:
        remote = f"{self._kind_path(project, kind)}/{name}"
        if self._exists(f"{remote}/{COMPLETE_MARKER}"):
            raise RegistryError(f"version {name} exists already")
        local_kind = self._local_kind_dir(project, kind)
        staging = stage_version(local_kind, name, kind, write, metrics)
        try:
            files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)
            for file in files:
                self.fs.put_file(str(file), f"{remote}/{file.relative_to(staging).as_posix()}")
            self._put_marker(f"{remote}/{COMPLETE_MARKER}", (staging / COMPLETE_MARKER).read_bytes(), name)
            final = local_kind / name
            shutil.rmtree(final, ignore_errors=True)  # a stale cache copy of a version that never completed
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelVersion(str(project), kind, name, final)

    def _put_marker(self, path: str, data: bytes, name: str) -> None:
        try:
            self.fs.pipe_file(path, data, **({"mode": "create"} if self._conditional else {}))
        except OSError as exc:
            if self._conditional and _not_implemented(exc):
                self._give_up_conditions(exc)
                return self._put_marker(path, data, name)
            if isinstance(exc, FileExistsError) or _is_conflict(exc):
                raise RegistryError(f"version {name} exists already") from exc
            raise

    def versions(self, project: str | int, kind: str) -> list[ModelVersion]:
        kind_path = self._kind_path(project, kind)
        self.fs.invalidate_cache(kind_path)
        markers = sorted(self.fs.glob(f"{kind_path}/*/{COMPLETE_MARKER}"))
        names = [m.rstrip("/").split("/")[-2] for m in markers]
        return [v for n in names if not n.startswith(".") and (v := self._complete_version(str(project), kind, n))]

    def _complete_version(self, project: str, kind: str, name: str) -> ModelVersion | None:
        """Downloads the version into the cache the first time; None when it is not complete."""
        final = self._local_kind_dir(project, kind) / name
        if (final / COMPLETE_MARKER).is_file():
            return ModelVersion(project, kind, name, final)
        remote = f"{self._kind_path(project, kind)}/{name}"
        self.fs.invalidate_cache(remote)
        files = [f for f in self.fs.find(remote) if not f.endswith("/")]
        if f"{remote}/{COMPLETE_MARKER}" not in files:
            return None
        final.parent.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".download-{name}-"))
        try:
            for file in files:
                target = download / file[len(remote) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(file, str(target))
            try:
                os.rename(download, final)
            except OSError as exc:  # another thread or process got it first: theirs is the same version
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            shutil.rmtree(download, ignore_errors=True)
        return ModelVersion(project, kind, name, final)

    def _pointer_path(self, project: str | int, kind: str) -> str:
        return f"{self._kind_path(project, kind)}/{POINTER}"

    def pointer_stamp(self, project: str | int, kind: str) -> Hashable | None:
        path = self._pointer_path(project, kind)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        return _stamp(info)

    def _read_pointer(self, project: str, kind: str) -> tuple[bytes | None, Hashable | None]:
        """The pointer's content and a token: its ETag from the same GET on S3, elsewhere the content's hash
        (stores differ in which metadata changes on a rewrite)."""
        path = self._pointer_path(project, kind)
        try:
            if self._s3:
                return sync(self.fs.loop, self._get_with_etag, path)
            self.fs.invalidate_cache(path)
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    async def _get_with_etag(self, path: str) -> tuple[bytes, str]:
        bucket, key, _ = self.fs.split_path(path)
        response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
        try:
            return await response["Body"].read(), response["ETag"]
        finally:
            response["Body"].close()

    def _write_pointer(self, project: str, kind: str, data: bytes, token: Hashable | None) -> None:
        path = self._pointer_path(project, kind)
        if self._conditional:
            condition = {"IfMatch": token} if token else {"IfNoneMatch": "*"}
            try:
                self.fs.pipe_file(path, data, **condition)
                return
            except OSError as exc:
                if isinstance(exc, FileExistsError) or _is_conflict(exc):
                    raise PointerChanged from exc
                if not _not_implemented(exc):
                    raise
                self._give_up_conditions(exc)
        if self._read_pointer(project, kind)[1] != token:
            raise PointerChanged
        self.fs.pipe_file(path, data)
        self.fs.invalidate_cache(path)
        if self.fs.cat_file(path) != data:
            raise PointerChanged

    def _give_up_conditions(self, exc: Exception) -> None:
        log.warning(
            "%s does not support conditional writes (%s): promotion falls back to check-then-write", self.url, exc
        )
        self._conditional = False

    def read_kind_file(self, project: str | int, kind: str, filename: str) -> bytes | None:
        try:
            return self.fs.cat_file(f"{self._kind_path(project, kind)}/{filename}")
        except FileNotFoundError:
            return None

    def write_kind_file(self, project: str | int, kind: str, filename: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self._kind_path(project, kind)}/{filename}", data)

    def read_project_file(self, project: str | int, name: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(f"{self.root}/project-{project}/{name}"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_project_file(self, project: str | int, name: str, data: dict) -> None:
        """One PUT: the object store replaces the record whole."""
        self.fs.pipe_file(f"{self.root}/project-{project}/{name}", json.dumps(data, indent=2, sort_keys=True).encode())

    def has_version(self, project: str | int, kind: str, name: str) -> bool:
        return self._exists(f"{self._kind_path(project, kind)}/{name}/{COMPLETE_MARKER}")

    def version_location(self, project: str | int, kind: str, name: str) -> str:
        return f"{self.url}/project-{project}/{kind}/{name}"

    def clean_staging(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove uploads that never completed (no marker) and are older than `max_age_seconds` (their writer
        may still be uploading from another machine until then), and this machine's dead local staging."""
        removed = remove_dead_staging(self.cache_dir.glob("project-*/*/.staging-*"), max_age_seconds)
        removed += remove_dead_staging(self.cache_dir.glob("project-*/*/.download-*"), max_age_seconds)
        self.fs.invalidate_cache(self.root)
        found = self.fs.find(self.root, detail=True) if self.fs.exists(self.root) else {}
        versions: dict[str, list[dict]] = {}
        for path, info in found.items():
            parts = path[len(self.root) + 1 :].split("/")
            if len(parts) >= 4 and parts[0].startswith("project-"):
                versions.setdefault("/".join([self.root, *parts[:3]]), []).append(info)
        for prefix, infos in versions.items():
            complete = any(i["name"] == f"{prefix}/{COMPLETE_MARKER}" for i in infos)
            if not complete and time.time() - max(_modified(i) for i in infos) >= max_age_seconds:
                self.fs.rm(prefix, recursive=True)
                removed += 1
        return removed


def _stamp(info: dict) -> Hashable:
    """What changes when an object is rewritten: its ETag where the store has one, else its times and size."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return etag
    keys = ("generation", "md5Hash", "mtime", "LastModified", "last_modified", "created", "size")
    return tuple(str(info.get(key)) for key in keys)


def _modified(info: dict) -> float:
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _error_code(exc: BaseException) -> str:
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return str(error.get("Code") or status or "")


def _is_conflict(exc: OSError) -> bool:
    code = _error_code(exc)
    return (
        code in CONFLICT_CODES or "PreconditionFailed" in str(exc) or "At least one of the pre-conditions" in str(exc)
    )


def _not_implemented(exc: OSError) -> bool:
    return exc.errno == errno.ENOSYS or _error_code(exc) in ("NotImplemented", "501")
