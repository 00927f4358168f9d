"""Image embeddings on disk, keyed by encoder identity and image content hash (SQLite, safe across threads).

Next to them, an index image URL -> content hash of the bytes last fetched from it: batch jobs (re-scoring,
selection) find a frame's embedding from its task's URL without fetching the frame again. Label Studio's
upload and storage URLs name one file each; `/predict` always fetches, and refreshes the index as it does."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " encoder TEXT NOT NULL, content_hash TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (encoder, content_hash))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS urls (url TEXT PRIMARY KEY, content_hash TEXT NOT NULL)")
        self._db.commit()
        self.closed = False

    def get_many(self, encoder: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = self._db.execute(
                    "SELECT content_hash, vector FROM embeddings WHERE encoder = ? AND content_hash IN "
                    f"({','.join('?' * len(chunk))})",
                    [encoder, *chunk],
                ).fetchall()
                found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def remember_urls(self, hashes: dict[str, str]) -> None:
        """Record url -> content hash of the bytes just fetched from it."""
        if hashes:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO urls VALUES (?, ?)", list(hashes.items()))

    def hashes_for_urls(self, encoder: str, urls: Iterable[str]) -> dict[str, str]:
        """url -> content hash, for the urls whose last fetched bytes have an embedding of `encoder`."""
        wanted = list(dict.fromkeys(urls))
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = self._db.execute(
                    "SELECT u.url, u.content_hash FROM urls u JOIN embeddings e"
                    " ON e.encoder = ? AND e.content_hash = u.content_hash"
                    f" WHERE u.url IN ({','.join('?' * len(chunk))})",
                    [encoder, *chunk],
                ).fetchall()
                found.update(rows)
        return found

    def all(self, encoder: str) -> tuple[list[str], np.ndarray]:
        """Every cached embedding of one encoder, as (content hashes, one float32 matrix)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT content_hash, vector FROM embeddings WHERE encoder = ?", (encoder,)
            ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        hashes = [h for h, _ in rows]
        matrix = np.frombuffer(bytearray(b"".join(blob for _, blob in rows)), dtype=np.float32).reshape(len(rows), -1)
        return hashes, matrix

    def put_many(self, encoder: str, items: dict[str, np.ndarray]) -> None:
        rows = [
            (encoder, h, int(v.shape[-1]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for h, v in items.items()
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def count(self, encoder: str | None = None) -> int:
        with self._lock:
            if encoder is None:
                return self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM embeddings WHERE encoder = ?", (encoder,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self.closed = True
