"""Mask prediction + Label Studio RLE encoding at 1280x720, and the RLE encoding alone.

Per frame: decode the JPEG to the segmenter's input size, predict, upsample the mask to 1280x720, encode one
brush region per soiling class present. Target: RLE encoding under 10% of the total.

    .venv/bin/python benchmarks/segment_speed.py [--arch Unet] [--encoder resnet18] [--size 512x288] [--frames 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from labelstudio.brush import mask_to_rle
from models.frames import decode_image
from models.segmenter import Segmenter
from training.synthetic import make_frames


def run(device: str, args, jpegs: list[bytes], masks: list[np.ndarray]) -> None:
    width, _, height = args.size.partition("x")
    segmenter = Segmenter.create(args.arch, args.encoder, None, (int(width), int(height)), device)
    segmenter.predict_masks([decode_image(jpegs[0], segmenter.image_size, 10**9)])  # warm-up
    rle_seconds = 0.0
    start = time.perf_counter()
    for data in jpegs:
        small = segmenter.predict_masks([decode_image(data, segmenter.image_size, 10**9)])[0]
        full = np.asarray(Image.fromarray(small).resize((1280, 720), Image.Resampling.NEAREST))
        encode_start = time.perf_counter()
        for index in range(1, 4):
            if (full == index).any():
                mask_to_rle(full == index)
        rle_seconds += time.perf_counter() - encode_start
    total = time.perf_counter() - start
    alone = time.perf_counter()
    for mask in masks:
        for index in range(1, 4):
            if (mask == index).any():
                mask_to_rle(mask == index)
    alone = (time.perf_counter() - alone) / len(masks)
    print(
        f"{device:>5} {args.arch}/{args.encoder} @ {args.size}: {len(jpegs) / total:6.2f} frames/s end to end, "
        f"RLE {rle_seconds / total:5.1%} of it; RLE of a true 1280x720 mask alone {alone * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="Unet")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", default="512x288")
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    frames = make_frames(args.frames, 1280, 720, dirty_fraction=1.0, seed=8)
    jpegs, masks = [f.jpeg() for f in frames], [f.mask for f in frames]
    threads = torch.get_num_threads()
    print(f"random-weight segmenter (noisy masks: the RLE share is a worst case); torch threads {threads}")
    run("cpu", args, jpegs, masks)
    if torch.cuda.is_available():
        run("cuda", args, jpegs, masks)


if __name__ == "__main__":
    main()
