"""Re-scoring a new prompt set over cached embeddings: no image is read and the image encoder never runs.

Fills an embedding cache with N vectors for the default architecture's embedding size (setup, not timed), then
times: reading them all from the SQLite cache, encoding the new prompt set's text, and scoring every frame.
Target: under 1 s in total for 100k cached frames on CPU.

    .venv/bin/python benchmarks/rescore.py [--frames 100000] [--model ViT-B-16]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.embedding_cache import EmbeddingCache
from models.zero_shot import ZeroShotConfig, create_zero_shot_scorer
from models.zero_shot.prompts import parse_prompt_set

NEW_PROMPTS = {
    "name": "rescore-bench",
    "version": "1",
    "classes": {
        "clean": ["a clean camera lens", "a sharp, unobstructed industrial camera view", "clear picture"],
        "dirty": ["a camera lens splashed with slurry", "grime on the lens", "a foggy lens", "dust on the glass"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--model", default="ViT-B-16")
    args = parser.parse_args()
    scorer = create_zero_shot_scorer(ZeroShotConfig(model_name=args.model, pretrained=None, device="cpu"))
    dim = int(scorer.clip.model.text_projection.shape[1]) if hasattr(scorer.clip.model, "text_projection") else 512
    with tempfile.TemporaryDirectory() as state:
        cache = EmbeddingCache(Path(state) / "embeddings.sqlite3")
        rng = np.random.default_rng(0)
        print(f"filling the cache with {args.frames} {dim}-d embeddings (setup, not timed)...", flush=True)
        for start in range(0, args.frames, 20_000):
            count = min(20_000, args.frames - start)
            vectors = rng.normal(size=(count, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            hashes = [hashlib.sha256(str(start + i).encode()).hexdigest() for i in range(count)]
            cache.put_many(scorer.encoder_identity, dict(zip(hashes, vectors, strict=True)))

        rescorer = scorer.with_prompt_set(parse_prompt_set(NEW_PROMPTS))
        timings = {}
        start = time.perf_counter()
        _, embeddings = cache.all(scorer.encoder_identity)
        timings["read cache"] = time.perf_counter() - start
        start = time.perf_counter()
        classes = rescorer.prompt_set.classes
        rescorer.class_embeddings([classes["clean"], classes["dirty"]])
        timings["encode prompts"] = time.perf_counter() - start
        start = time.perf_counter()
        p_dirty = rescorer.class_probabilities(embeddings, [classes["clean"], classes["dirty"]])[:, 1]
        timings["score frames"] = time.perf_counter() - start
    assert p_dirty.shape == (args.frames,)
    print(
        f"\n{args.frames} cached frames, model {args.model} text tower on CPU, torch threads {torch.get_num_threads()}"
    )
    for name, seconds in timings.items():
        print(f"  {name:<16} {seconds:7.3f} s")
    print(f"  {'total':<16} {sum(timings.values()):7.3f} s   (target: under 1 s)")


if __name__ == "__main__":
    main()
