"""Segmentation families side by side on the real dev set, and whether synthetic soiling helps.

Each family is trained on the dev set's training part (../shared/data/nornickel-dev, skipped when absent; the
grouped split of benchmarks/_stack.py) with the job's own training function (training/segment.py), early
stopping on an inner grouped validation part of the training part, then judged on the held-out part: dirt IoU
(mean over dirty frames, and pooled over all pixels), false-alarm rate on clean frames (> 1% predicted dirt),
tile-coverage MAE (4x4 grid; the tile head's own coverage, the others' from their masks), ROC-AUC of predicted
coverage as a dirty-frame score, training time, frames/s on CPU for 1280x720 JPEGs (decode, predict, mask back
at 1280x720) at the training size and at 512x288, and parameters; then the same family with the gate
(minimum area, per-class confidence) chosen on the inner validation part, and one family with test-time
flips. Dev masks are one class (dirt -> opaque).

The synthetic criterion trains one family on synthetic soiling only (realistic style, and the old blobs, drawn
over the clean frames of the inner training part), and on 5, 10 or all dev masks with and without synthetic
frames, judged on the same held-out part.

    .venv/bin/python benchmarks/segmenter_zoo.py [--size 256x160] [--epochs 12] [--part zoo|synthetic|all]
        [--families Unet:resnet18,FPN:mobilenet_v2,...] [--synthetic-family Unet:resnet18]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from PIL import Image

from benchmarks._stack import DEV_SET, dev_set_rows, dev_set_split, inner_split
from models.pipeline import decode_image
from models.segmenter import NUM_CLASSES, Segmenter, SegmenterSpec, create_segmenter
from models.segmenter.stitching import tile_means
from training.mask_gate import choose_gate
from training.progress import JobProgress
from training.segment import SegmenterConfig, train_segmenter
from training.segmenter_zoo import dirt_metrics, few_masks
from training.synthetic import make_frames

FAMILIES = (
    "Unet:resnet18,UnetPlusPlus:resnet18,FPN:resnet18,DeepLabV3:resnet18,DeepLabV3Plus:resnet18,Segformer:mit_b0,"
    "Linknet:mobilenet_v2,FPN:mobilenet_v2,Mask2Former:small,TileHead:resnet18"
)
GRID = (4, 4)
DIRT = 3  # the dev masks are binary: dirt is imported as one class, as benchmarks/real_segmentation.py does


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def coverage_of(masks) -> np.ndarray:
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)
    return np.stack([tile_means(one_hot[m].transpose(2, 0, 1), GRID) for m in masks])


def evaluate(segmenter: Segmenter, pixels, truths) -> dict:
    predicted = segmenter.predict_masks(pixels)
    return dirt_metrics(truths, list(predicted), coverage_of(truths), segmenter.predict_coverage(pixels, GRID))


def frames_per_second(segmenter: Segmenter, jpegs: list[bytes]) -> float:
    segmenter.predict_masks([decode_image(jpegs[0], segmenter.image_size, 10**9)])  # warm-up
    start = time.perf_counter()
    for data in jpegs:
        small = segmenter.predict_masks([decode_image(data, segmenter.image_size, 10**9)])[0]
        Image.fromarray(small).resize((1280, 720), Image.Resampling.NEAREST)
    return len(jpegs) / (time.perf_counter() - start)


def train(family: str, pixels, masks, train_idx, val_idx, args) -> tuple[Segmenter, float]:
    arch, _, encoder = family.partition(":")
    config = SegmenterConfig(
        arch=arch,
        encoder=encoder,
        encoder_weights=None,
        image_size=args.size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        gate=False,  # judged apart below: the gate row chooses it on the inner validation part
        device="cpu",
    )
    start = time.perf_counter()
    progress = JobProgress(echo=(lambda line: print(line, file=sys.stderr, flush=True)) if args.progress else None)
    segmenter = train_segmenter(pixels, masks, train_idx, val_idx, config, progress)
    return segmenter, time.perf_counter() - start


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def row(name: str, metrics: dict) -> str:
    keys = ("dirt_iou_dirty_mean", "dirt_iou_pooled", "false_alarm_rate", "tile_coverage_mae", "coverage_auc")
    return f"| {name} | " + " | ".join(fmt(metrics[k]) for k in keys)


def run_zoo(args, data) -> None:
    pixels, masks, inner_train, inner_val, held = data
    held_pixels, held_masks = [pixels[i] for i in held], [masks[i] for i in held]
    jpegs = [f.jpeg() for f in make_frames(args.speed_frames, 1280, 720, dirty_fraction=1.0, seed=8)]
    print(
        "\n| family | dirt IoU (dirty, mean) | dirt IoU (pooled) | false alarms (clean) | tile-coverage MAE | "
        f"coverage ROC-AUC | train s | fr/s @{args.size[0]}x{args.size[1]} | fr/s @512x288 | params (M) |"
    )
    print("| --- |" + " ---: |" * 9)
    for family in args.families.split(","):
        segmenter, seconds = train(family, pixels, masks, inner_train, inner_val, args)
        metrics = evaluate(segmenter, held_pixels, held_masks)
        speed = frames_per_second(segmenter, jpegs)
        serving = create_segmenter(
            SegmenterSpec(segmenter.arch, segmenter.encoder, None, (512, 288), device="cpu")
        )  # speed only: weights do not change it
        speed_512 = frames_per_second(serving, jpegs)
        params = sum(p.numel() for p in segmenter.model.parameters()) / 1e6
        print(f"{row(family, metrics)} | {seconds:.0f} | {speed:.2f} | {speed_512:.2f} | {params:.1f} |", flush=True)
        val_pixels = [pixels[i] for i in inner_val]
        gate = choose_gate(list(segmenter.predict_probabilities(val_pixels)), [masks[i] for i in inner_val])
        gated = segmenter.with_options(gate=gate)
        print(f"{row(f'{family} + gate', evaluate(gated, held_pixels, held_masks))} | | | | |", flush=True)
        print(f"  gate chosen on the inner validation part: {gate}", file=sys.stderr, flush=True)
        if family == args.options_family:
            for name, options in (("+ flips h", {"flips": ("h",)}), ("+ flips h,v", {"flips": ("h", "v")})):
                variant = segmenter.with_options(**options)
                print(
                    f"{row(f'{family} {name}', evaluate(variant, held_pixels, held_masks))} | | "
                    f"{frames_per_second(variant, jpegs):.2f} | | |",
                    flush=True,
                )


def run_synthetic(args, data, clean_backgrounds) -> None:
    pixels, masks, inner_train, inner_val, held = data
    held_pixels, held_masks = [pixels[i] for i in held], [masks[i] for i in held]
    dirty = np.array([m.any() for m in masks])
    family = args.synthetic_family

    def synthetic(style: str, count: int, seed: int):
        frames = make_frames(count, *args.size, 1.0, seed, style, backgrounds=clean_backgrounds)
        return [np.asarray(f.image) for f in frames], [np.where(f.mask > 0, DIRT, 0).astype(np.uint8) for f in frames]

    print(
        f"\nsynthetic criterion: {family}, {args.synthetic_frames} synthetic frames over "
        f"{len(clean_backgrounds)} clean frames of the inner training part; held-out part as above"
    )
    print(
        "\n| training data | dirt IoU (dirty, mean) | dirt IoU (pooled) | false alarms (clean) | tile-coverage MAE | "
        "coverage ROC-AUC | dev masks |"
    )
    print("| --- |" + " ---: |" * 6)
    for style in ("realistic", "blobs"):  # synthetic only: early stopping on synthetic frames too, no real mask
        train_pixels, train_masks = synthetic(style, args.synthetic_frames, seed=1)
        val_pixels, val_masks = synthetic(style, max(8, args.synthetic_frames // 4), seed=2)
        all_pixels, all_masks = train_pixels + val_pixels, train_masks + val_masks
        n = len(train_pixels)
        segmenter, _ = train(family, all_pixels, all_masks, np.arange(n), np.arange(n, len(all_pixels)), args)
        print(f"{row(f'synthetic only ({style})', evaluate(segmenter, held_pixels, held_masks))} | 0 |", flush=True)
    syn_pixels, syn_masks = synthetic("realistic", args.synthetic_frames, seed=1)
    available = int(dirty[inner_train].sum())
    for count in [c for c in (5, 10) if c < available] + [None]:  # counts at or over what there is: "all"
        chosen = few_masks(inner_train, dirty, count)
        n_masks = int(dirty[chosen].sum())
        for with_synthetic in (False, True):
            extra = np.arange(len(pixels), len(pixels) + len(syn_pixels)) if with_synthetic else np.array([], int)
            segmenter, _ = train(
                family, pixels + syn_pixels, masks + syn_masks, np.concatenate([chosen, extra]), inner_val, args
            )
            name = f"dev {count or 'all'} masks" + (" + synthetic" if with_synthetic else "")
            print(f"{row(name, evaluate(segmenter, held_pixels, held_masks))} | {n_masks} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(256, 160))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--families", default=FAMILIES)
    parser.add_argument("--options-family", default="Unet:resnet18", help="also judged with test-time flips")
    parser.add_argument("--part", choices=["zoo", "synthetic", "all"], default="all")
    parser.add_argument("--synthetic-family", default="Unet:resnet18")
    parser.add_argument("--synthetic-frames", type=int, default=48)
    parser.add_argument("--speed-frames", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--progress", action="store_true", help="training progress on stderr")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = dev_set_rows()
    if rows is None:
        return
    labels, train_part, held = dev_set_split(rows)
    inner_train, inner_val = inner_split(rows, labels, train_part)
    pixels, masks = [], []
    for r in rows:
        pixels.append(decode_image((DEV_SET / r["image"]).read_bytes(), args.size, 10**9))
        mask = Image.open(DEV_SET / r["mask"]).convert("L").resize(args.size, Image.Resampling.NEAREST)
        masks.append(np.where(np.asarray(mask) > 127, DIRT, 0).astype(np.uint8))
    print(
        f"inner training part {len(inner_train)} ({int(labels[inner_train].sum())} dirty), inner validation "
        f"{len(inner_val)} ({int(labels[inner_val].sum())} dirty), held-out {len(held)} "
        f"({int(labels[held].sum())} dirty); {args.size[0]}x{args.size[1]}, up to {args.epochs} epochs, random "
        f"initialisation (no pretrained weights here), CPU with {torch.get_num_threads()} threads"
    )
    data = (pixels, masks, inner_train, inner_val, held)
    if args.part in ("zoo", "all"):
        run_zoo(args, data)
    if args.part in ("synthetic", "all"):
        backgrounds = [Image.fromarray(pixels[i]) for i in inner_train if not labels[i]]
        run_synthetic(args, data, backgrounds)


if __name__ == "__main__":
    main()
