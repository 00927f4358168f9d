"""Training memory and throughput with the on-disk frame cache and DataLoader workers.

PYTHONPATH=. .venv/bin/python benchmarks/train_memory.py [--frames 200,2000] [--workers 0,2] [--epochs 1]

Synthetic 1280x720 JPEG frames (training.synthetic, distinct bytes each) are decoded once into a frame cache
(models.frame_cache), as the training jobs' dataset step does. Then each row trains in a fresh process (a tiny
timm classifier at 224 px; a tiny-encoder TileHead segmenter at 512x288 with masks), reading frames either
from the cache (what the jobs do now) or from a list of decoded frames held in memory (what they did before),
and prints the training process's peak RSS, its largest DataLoader worker's peak RSS, and images/s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from models.frame_cache import CachedArrays, FrameCache
from training.synthetic import make_frames

FRAME_SIZE = (1280, 720)
FINETUNE_SIZE = 224
SEGMENTER_SIZE = (512, 288)
BASE_FRAMES = 24  # distinct synthetic scenes; every other frame is one of them, brightened (new bytes)


def build_cache(root: Path, count: int) -> dict[str, list[str]]:
    """`count` distinct JPEG frames decoded into the cache at both training sizes, with the segmenter's masks."""
    cache = FrameCache(root)
    base = make_frames(BASE_FRAMES, *FRAME_SIZE, dirty_fraction=0.6, seed=7)
    paths: dict[str, list[str]] = {"finetune": [], "frames": [], "masks": [], "labels": []}
    for i in range(count):
        frame = base[i % BASE_FRAMES]
        shift = i // BASE_FRAMES  # a brightness step per round: different bytes, the same soiling
        pixels = np.clip(np.asarray(frame.image, np.int16) + shift % 40 - 20, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=88)
        data = out.getvalue()
        paths["finetune"].append(str(cache.frame(data, (FINETUNE_SIZE, FINETUNE_SIZE), 10**8)))
        paths["frames"].append(str(cache.frame(data, SEGMENTER_SIZE, 10**8)))
        paths["masks"].append(str(cache.mask(frame.mask, SEGMENTER_SIZE)))
        paths["labels"].append(str(int(frame.is_dirty)))
    return paths


def peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def child(spec: dict) -> dict:
    """One training run in this (fresh) process; returns its figures."""
    import torch

    from training.finetune import FinetuneConfig, finetune
    from training.progress import JobProgress
    from training.segment import SegmenterConfig, train_segmenter

    torch.set_num_threads(2)
    count, workers, epochs = spec["frames"], spec["workers"], spec["epochs"]
    paths = {key: values[:count] for key, values in json.loads(Path(spec["paths"]).read_text()).items()}
    in_memory = spec["source"] == "memory"

    def frames(key: str):
        arrays = CachedArrays([Path(p) for p in paths[key]])
        return [arrays[i] for i in range(len(arrays))] if in_memory else arrays

    split = count - count // 5
    train, val = np.arange(split), np.arange(split, count)
    start = time.perf_counter()
    loop = {"epochs": epochs, "patience": epochs, "device": "cpu", "loader_workers": workers}
    if spec["model"] == "finetune":
        labels = np.array([int(v) for v in paths["labels"]])
        config = FinetuneConfig(
            arch="test_efficientnet", pretrained=False, image_size=FINETUNE_SIZE, batch_size=32, **loop
        )
        finetune(frames("finetune"), labels, np.ones(count, np.float32), train, val, config, JobProgress())
    else:
        config = SegmenterConfig(
            arch="TileHead",  # the lightest family: DeepLabV3+'s decoder costs 25x more per frame on 2 CPU cores
            encoder="tu-test_resnet",
            encoder_weights=None,
            image_size=SEGMENTER_SIZE,
            batch_size=8,
            gate=False,
            **loop,
        )
        train_segmenter(frames("frames"), frames("masks"), train, val, config, JobProgress())
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "images_per_s": count * epochs / elapsed,  # training passes plus the validation pass of each epoch
        "peak_rss_mib": peak_mib(resource.RUSAGE_SELF),
        "worker_peak_rss_mib": peak_mib(resource.RUSAGE_CHILDREN),
    }


def run(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # this checkout's packages, as in the parent
    )
    if done.returncode:
        raise RuntimeError(f"{spec['model']} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="200,2000", help="labelled frame counts to compare")
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts for the throughput rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--models", default="finetune,segmenter")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    counts = [int(c) for c in args.frames.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="lensguard-train-memory-") as root:
        start = time.perf_counter()
        paths = Path(root) / "paths.json"
        paths.write_text(json.dumps(build_cache(Path(root), max(counts))))
        size = FrameCache(root).size_bytes() / 2**20
        print(f"frame cache: {max(counts)} frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]} decoded at 224x224 and 512x288 plus")
        print(f"masks: {size:.0f} MiB on disk, built in {time.perf_counter() - start:.0f} s")
        print(f"\npeak RSS as labelled frames grow ({args.epochs} epoch, DataLoader workers {max(workers)})")
        print(f"{'model':>10} {'source':>7} {'frames':>7} {'peak RSS MiB':>13} {'worker MiB':>11} {'images/s':>9}")
        for model in models:
            for source in ("cache", "memory"):
                for count in counts:
                    spec = {"model": model, "source": source, "frames": count, "workers": max(workers)}
                    figures = run({**spec, "epochs": args.epochs, "paths": str(paths)})
                    print(
                        f"{model:>10} {source:>7} {count:>7} {figures['peak_rss_mib']:>13.0f} "
                        f"{figures['worker_peak_rss_mib']:>11.0f} {figures['images_per_s']:>9.1f}"
                    )
        print(f"\nthroughput from the cache, {min(counts)} frames, by DataLoader workers (2 cores here)")
        print(f"{'model':>10} {'workers':>8} {'images/s':>9} {'seconds':>8} {'peak RSS MiB':>13}")
        for model in models:
            for count in workers:
                spec = {"model": model, "source": "cache", "frames": min(counts), "workers": count}
                figures = run({**spec, "epochs": args.epochs, "paths": str(paths)})
                print(
                    f"{model:>10} {count:>8} {figures['images_per_s']:>9.1f} {figures['seconds']:>8.1f} "
                    f"{figures['peak_rss_mib']:>13.0f}"
                )


if __name__ == "__main__":
    main()
