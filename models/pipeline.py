"""Image bytes -> zero-shot verdicts: decode in threads, reuse cached embeddings, encode only what is new."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from models.classifier import Classifier
from models.embedding_cache import EmbeddingCache, content_hash
from models.frames import ImageDecodeError, decode_image
from models.runtimes.gpu_decode import GpuFrameDecoder
from models.runtimes.torch_encoder import TorchEncoder
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
    images: list[bytes | None]  # None: not fetched, its embedding was cached (see SoilingPipeline.prepare)
    hashes: list[str]
    cached: dict[str, np.ndarray]
    decoded: dict[str, np.ndarray | bytes | Exception]  # frames the cache lacked; bytes: JPEGs left for the GPU
    embedded: list[np.ndarray | Exception] | None = None  # set by `finish`: one embedding (or error) per image


def gpu_decoder_for(scorer: ZeroShotScorer, max_pixels: int) -> GpuFrameDecoder | None:
    """On CUDA with a torch runtime, frames are decoded and resized on the GPU rather than in CPU threads."""
    if scorer.clip.device.type != "cuda" or not isinstance(scorer.runtime.encoder, TorchEncoder):
        return None
    size = scorer.clip.image_size
    return GpuFrameDecoder(size, scorer.clip.device, lambda data: decode_image(data, size, max_pixels), max_pixels)


class SoilingPipeline:
    def __init__(
        self,
        scorer: ZeroShotScorer,
        cache: EmbeddingCache | None,
        max_pixels: int = 50_000_000,
        decode_threads: int = 4,
        gpu_decode: bool = True,
    ):
        self.scorer = scorer
        self.cache = cache
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode")
        self.stats = PipelineStats()
        self._classifier_lock = threading.Lock()
        self._gpu = gpu_decoder_for(scorer, max_pixels) if gpu_decode else None

    def prepare(self, images: Sequence[bytes | None], known: Sequence[str | None] = ()) -> Prepared:
        """The CPU side, safe to run in another thread while the model works: hash, cache lookup, decode.

        `known`: the content hash of frames not fetched (None in `images`) because their embedding is cached."""
        encoder = self.scorer.encoder_identity
        known = list(known) or [None] * len(images)
        hashes = [content_hash(data) if data is not None else h for data, h in zip(images, known, strict=True)]
        if any(h is None for h in hashes):
            raise ValueError("a frame without bytes needs its content hash")
        cached = self.cache.get_many(encoder, hashes) if self.cache else {}
        todo = {h: data for h, data in zip(hashes, images, strict=True) if h not in cached}
        gone = {
            h: ImageDecodeError("frame not fetched and its embedding is gone") for h, d in todo.items() if d is None
        }
        todo = {h: data for h, data in todo.items() if data is not None}
        if self._gpu is not None:
            decoded: dict = dict(todo)  # decoded (nvJPEG) and resized on the GPU in `finish`
        else:
            decoded = dict(zip(todo, self._pool.map(self._decode_or_error, todo.values()), strict=True))
        return Prepared(list(images), hashes, cached, decoded | gone)

    def finish(self, prepared: Prepared) -> list[np.ndarray | Exception]:
        """The model side: encode what the cache lacked, store it, return one embedding (or error) per image."""
        ready = {h: px for h, px in prepared.decoded.items() if not isinstance(px, Exception)}
        embeddings = dict(prepared.cached)
        errors = {h: px for h, px in prepared.decoded.items() if isinstance(px, Exception)}
        if ready:
            if self._gpu is not None:
                fresh, gpu_errors = self._encode_on_gpu(ready)
                errors.update(gpu_errors)
            else:
                fresh = dict(zip(ready, self.scorer.encode_images(list(ready.values())), strict=True))
            if self.cache and fresh:
                self.cache.put_many(self.scorer.encoder_identity, fresh)
            embeddings.update(fresh)
        self.stats.images += len(prepared.hashes)
        self.stats.cache_hits += len(prepared.hashes) - len(prepared.decoded)
        self.stats.encoded += len(prepared.decoded) - len(errors)
        self.stats.failed += len(errors)
        prepared.embedded = [embeddings[h] if h in embeddings else errors[h] for h in prepared.hashes]
        return prepared.embedded

    def _encode_on_gpu(self, jpegs: dict[str, bytes]) -> tuple[dict[str, np.ndarray], dict[str, Exception]]:
        frames, failures = self._gpu.decode(list(jpegs.values()))
        self._gpu.ready()
        good = [h for h, failure in zip(jpegs, failures, strict=True) if failure is None]
        vectors = self.scorer.encode_tensor(frames) if good else []
        errors = {h: failure for h, failure in zip(jpegs, failures, strict=True) if failure is not None}
        return dict(zip(good, vectors, strict=True)), errors

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
            with self._classifier_lock:  # the zero-shot encoder batches concurrent calls; the classifier is serial
                if classifier.needs == "embeddings":
                    p_classifier = classifier.predict_proba(embeddings)
                else:
                    pixels = self.pixels([images[i] for i in good], classifier.image_size)
                    p_classifier = classifier.predict_proba(pixels)
        kind = getattr(classifier, "kind", "")
        for i, zs, p in zip(good, zero_shot, p_classifier, strict=True):
            results[i] = combine(zs, p, mode, kind)
        return results
