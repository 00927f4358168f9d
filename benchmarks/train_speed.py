"""Training speed: linear-probe fit time on 1k/10k/100k cached embeddings, and fine-tune images/s per epoch.

.venv/bin/python benchmarks/train_speed.py [--arch efficientnet_b0] [--images 64] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from models.classifier import LinearProbe
from training.finetune import FinetuneConfig, finetune
from training.progress import JobProgress


def probe_times(sizes: list[int], dim: int) -> None:
    print(f"\nlinear probe on {dim}-d embeddings (2 classes, balanced weights)")
    print(f"{'embeddings':>10} {'fit s':>8}")
    rng = np.random.default_rng(0)
    for n in sizes:
        labels = rng.integers(0, 2, n)
        embeddings = rng.normal(size=(n, dim)).astype(np.float32) + labels[:, None] * 0.05
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        start = time.perf_counter()
        LinearProbe.fit(embeddings, labels, encoder="bench")
        print(f"{n:>10} {time.perf_counter() - start:>8.2f}")


def finetune_speed(arch: str, images: int, size: int, device: str, epochs: int) -> None:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(images)]
    labels = np.array([i % 2 for i in range(images)])
    train = np.arange(images - images // 4)
    val = np.arange(images - images // 4, images)
    config = FinetuneConfig(arch=arch, pretrained=False, image_size=size, epochs=epochs, patience=epochs, device=device)
    start = time.perf_counter()
    finetune(pixels, labels, np.ones(images, np.float32), train, val, config, JobProgress())
    elapsed = time.perf_counter() - start
    per_epoch = (len(train) + len(val)) * epochs / elapsed  # train step plus validation pass
    print(f"{arch:>16} {device:>6} {size:>5} {len(train):>7} {epochs:>6} {per_epoch:>10.1f} {elapsed:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    probe_times([int(s) for s in args.sizes.split(",")], args.dim)
    print(f"\nfine-tune (random init, augmentations on), torch threads {torch.get_num_threads()}")
    print(f"{'arch':>16} {'device':>6} {'px':>5} {'train':>7} {'epochs':>6} {'images/s':>10} {'total s':>8}")
    finetune_speed(args.arch, args.images, args.size, "cpu", args.epochs)
    if torch.cuda.is_available():
        finetune_speed(args.arch, args.images * 8, args.size, "cuda", args.epochs)
    else:
        print("(no GPU here: the GPU row is printed where CUDA is available)")


if __name__ == "__main__":
    main()
