"""The fine-tuned classifier with and without timm's Mixup (mixup + cutmix, label smoothing) on the real dev set.

Trained on the dev set's training part (../shared/data/nornickel-dev, skipped when absent; the grouped split of
benchmarks/_stack.py) with early stopping on an inner grouped validation part, judged on the held-out part:
ROC-AUC and balanced accuracy at 0.5, for each seed.

    .venv/bin/python benchmarks/classifier_mixup.py [--arch efficientnet_b0] [--size 160] [--epochs 12]
        [--seeds 0,1] [--mixup 0.8] [--cutmix 1.0] [--smoothing 0.1] [--pretrained]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from benchmarks._stack import DEV_SET, dev_set_rows, dev_set_split, inner_split
from models.pipeline import decode_image
from training.finetune import FinetuneConfig, finetune
from training.progress import JobProgress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--pretrained", action="store_true")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--mixup", type=float, default=0.8)
    parser.add_argument("--cutmix", type=float, default=1.0)
    parser.add_argument("--smoothing", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = dev_set_rows()
    if rows is None:
        return
    labels, train_part, held = dev_set_split(rows)
    inner_train, inner_val = inner_split(rows, labels, train_part)
    pixels = [decode_image((DEV_SET / r["image"]).read_bytes(), (args.size, args.size), 10**9) for r in rows]
    weights = np.ones(len(rows), np.float32)
    base = FinetuneConfig(
        arch=args.arch,
        pretrained=args.pretrained,
        image_size=args.size,
        epochs=args.epochs,
        batch_size=16,
        patience=args.patience,
        device="cpu",
    )
    variants = {
        "no mixing": base,
        f"mixup {args.mixup} + cutmix {args.cutmix}, smoothing {args.smoothing}": replace(
            base, mixup=args.mixup, cutmix=args.cutmix, label_smoothing=args.smoothing
        ),
    }
    print(f"\n| fine-tune ({args.arch} @{args.size}, held-out part) | seed | ROC-AUC | balanced accuracy @0.5 |")
    print("| --- | ---: | ---: | ---: |")
    for name, config in variants.items():
        for seed in [int(s) for s in args.seeds.split(",")]:
            model = finetune(pixels, labels, weights, inner_train, inner_val, replace(config, seed=seed), JobProgress())
            p = model.predict_proba([pixels[i] for i in held])
            auc = roc_auc_score(labels[held], p)
            balanced = balanced_accuracy_score(labels[held], p >= 0.5)
            print(f"| {name} | {seed} | {auc:.3f} | {balanced:.3f} |", flush=True)


if __name__ == "__main__":
    main()
