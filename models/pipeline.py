"""Image bytes -> zero-shot verdicts: decode in threads, reuse cached embeddings, encode only what is new."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from models.classifier import Classifier
from models.embedding_cache import EmbeddingCache, content_hash
from models.frames import ImageDecodeError, decode_image
from models.verdict import CombineMode, Verdict, combine
from models.zero_shot.scorer import ZeroShotScorer

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    images: int = 0
    cache_hits: int = 0
    encoded: int = 0
    failed: int = 0


@dataclass
class Prepared:
    images: list[bytes]
    hashes: list[str]
    cached: dict[str, np.ndarray]
    decoded: dict[str, np.ndarray | Exception]  # frames the cache lacked, ready for the encoder


class SoilingPipeline:
    def __init__(
        self,
        scorer: ZeroShotScorer,
        cache: EmbeddingCache | None,
        max_pixels: int = 50_000_000,
        decode_threads: int = 4,
    ):
        self.scorer = scorer
        self.cache = cache
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode")
        self.stats = PipelineStats()

    def prepare(self, images: Sequence[bytes]) -> Prepared:
        """The CPU side, safe to run in another thread while the model works: hash, cache lookup, decode."""
        encoder = self.scorer.encoder_identity
        hashes = [content_hash(data) for data in images]
        cached = self.cache.get_many(encoder, hashes) if self.cache else {}
        todo = {h: data for h, data in zip(hashes, images, strict=True) if h not in cached}
        decoded = dict(zip(todo, self._pool.map(self._decode_or_error, todo.values()), strict=True))
        return Prepared(list(images), hashes, cached, decoded)

    def finish(self, prepared: Prepared) -> list[np.ndarray | Exception]:
        """The model side: encode what the cache lacked, store it, return one embedding (or error) per image."""
        ready = {h: px for h, px in prepared.decoded.items() if not isinstance(px, Exception)}
        embeddings = dict(prepared.cached)
        if ready:
            vectors = self.scorer.encode_images(list(ready.values()))
            fresh = dict(zip(ready, vectors, strict=True))
            if self.cache:
                self.cache.put_many(self.scorer.encoder_identity, fresh)
            embeddings.update(fresh)
        self.stats.images += len(prepared.hashes)
        self.stats.cache_hits += len(prepared.hashes) - len(prepared.decoded)
        self.stats.encoded += len(ready)
        self.stats.failed += len(prepared.decoded) - len(ready)
        return [embeddings[h] if h in embeddings else prepared.decoded[h] for h in prepared.hashes]

    def embed(self, images: Sequence[bytes]) -> list[np.ndarray | Exception]:
        return self.finish(self.prepare(images))

    def _decode_or_error(self, data: bytes) -> np.ndarray | Exception:
        try:
            return decode_image(data, self.scorer.clip.image_size, self.max_pixels)
        except ImageDecodeError as exc:
            return exc

    def pixels(self, images: Sequence[bytes], size: int | tuple[int, int]) -> list[np.ndarray]:
        """Frames squashed to `size` (a side, or width x height), for models that read pixels."""
        shape = (size, size) if isinstance(size, int) else tuple(size)
        return list(self._pool.map(lambda data: decode_image(data, shape, self.max_pixels), images))

    def score(
        self,
        images: Sequence[bytes] | Prepared,
        type_labels: Sequence[str] = (),
        classifier: Classifier | None = None,
        mode: CombineMode = CombineMode.AVERAGE,
        scorer: ZeroShotScorer | None = None,
    ) -> list[Verdict | Exception]:
        """`scorer`: the same image encoder with another prompt set (a project's promoted one)."""
        prepared = images if isinstance(images, Prepared) else self.prepare(images)
        images = prepared.images
        embedded = self.finish(prepared)
        good = [i for i, e in enumerate(embedded) if not isinstance(e, Exception)]
        results: list[Verdict | Exception] = list(embedded)
        if not good:
            return results
        embeddings = np.stack([embedded[i] for i in good])
        zero_shot = (scorer or self.scorer).score(embeddings, type_labels)
        p_classifier: Sequence[float | None] = [None] * len(good)
        if classifier is not None:
            if classifier.needs == "embeddings":
                p_classifier = classifier.predict_proba(embeddings)
            else:
                p_classifier = classifier.predict_proba(self.pixels([images[i] for i in good], classifier.image_size))
        kind = getattr(classifier, "kind", "")
        for i, zs, p in zip(good, zero_shot, p_classifier, strict=True):
            results[i] = combine(zs, p, mode, kind)
        return results
