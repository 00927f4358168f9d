"""Decoded, resized frames and masks on disk, keyed by content hash and size (like the embedding cache), so that
training reads one frame at a time instead of holding a project's pixels in memory.

Each array is one `.npy` file under `root/<kind>-<W>x<H>/<hash[:2]>/<hash>.npy`, written to a temporary file in the
same directory and renamed into place: a reader (or a DataLoader worker) never sees a half-written file, and a
writer killed mid-way leaves only a `.tmp-*` file, which `sweep()` removes."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from models.embedding_cache import content_hash
from models.frames import decode_image, resize_mask

TMP_PREFIX = ".tmp-"


def array_hash(array: np.ndarray) -> str:
    """Content hash of an array (shape and dtype included): the key of a mask, which has no file of its own."""
    digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def write_atomically(path: Path, array: np.ndarray) -> None:
    """`array` as `path` (.npy), or nothing at all: written aside, flushed, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.npy")
    try:
        with open(temporary, "wb") as out:
            np.save(out, np.ascontiguousarray(array), allow_pickle=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class FrameCache:
    """Arrays keyed by (kind, size, content hash); `get_or_put` decodes only what is not cached yet."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, kind: str, size: tuple[int, int], key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"not a content hash: {key!r}")
        return self.root / f"{kind}-{size[0]}x{size[1]}" / key[:2] / f"{key}.npy"

    def get(self, kind: str, size: tuple[int, int], key: str) -> np.ndarray | None:
        path = self.path(kind, size, key)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # unreadable (a disk error, or a file from elsewhere): decode it again
            path.unlink(missing_ok=True)
            return None

    def put(self, kind: str, size: tuple[int, int], key: str, array: np.ndarray) -> Path:
        path = self.path(kind, size, key)
        write_atomically(path, array)
        return path

    def get_or_put(
        self, kind: str, size: tuple[int, int], key: str, make: Callable[[], np.ndarray]
    ) -> tuple[Path, bool]:
        """(the file holding the array, whether it was already cached); `make` runs on a miss only."""
        path = self.path(kind, size, key)
        if path.is_file():
            os.utime(path)  # recently used: `evict` removes the least recently used first
            return path, True
        return self.put(kind, size, key, make()), False

    def frame(self, data: bytes, size: tuple[int, int], max_pixels: int) -> Path:
        """The file of `data` (encoded image bytes) decoded and squashed to `size`; decoded on a miss only
        (models.frames.ImageDecodeError where it cannot be)."""
        return self.get_or_put("frame", size, content_hash(data), lambda: decode_image(data, size, max_pixels))[0]

    def mask(self, mask: np.ndarray, size: tuple[int, int]) -> Path:
        """The file of a class-id mask resized to `size` (nearest neighbour)."""
        return self.get_or_put("mask", size, array_hash(mask), lambda: resize_mask(mask, size))[0]

    def files(self) -> Iterator[Path]:
        return (p for p in self.root.glob("*/*/*.npy") if not p.name.startswith(TMP_PREFIX))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove temporary files left by writers killed mid-write (older than `older_than` seconds)."""
        cutoff, removed = time.time() - older_than, 0
        for temporary in self.root.glob(f"*/*/{TMP_PREFIX}*"):
            if temporary.stat().st_mtime < cutoff:
                temporary.unlink(missing_ok=True)
                removed += 1
        return removed

    def evict(self, max_bytes: int, keep: set[Path] | frozenset[Path] = frozenset()) -> int:
        """Remove the least recently used files until the cache holds at most `max_bytes` (never those in `keep`,
        e.g. the frames of the training run in progress); returns how many were removed."""
        entries = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in self.files()), key=lambda e: e[0])
        total, removed = sum(size for _, size, _ in entries), 0
        for _, size, path in entries:
            if total <= max_bytes:
                break
            if path in keep:
                continue
            path.unlink(missing_ok=True)
            total, removed = total - size, removed + 1
        return removed


class CachedArrays(Sequence[np.ndarray]):
    """A list of arrays read from their files on access (one at a time, or a slice of them): what a Dataset, a
    prediction in batches or a report indexes instead of a list held in memory. Picklable (paths only)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [np.load(path, allow_pickle=False) for path in self.paths[index]]
        return np.load(self.paths[index], allow_pickle=False)
