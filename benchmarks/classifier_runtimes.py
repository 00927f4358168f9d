"""The fine-tuned timm classifier on each runtime: frames/s of predict_proba on decoded frames at the classifier's
input size, the ratio to fp32 PyTorch measured right before it (adjacent baseline: the machine's load drifts),
fidelity of the exported backbone's features and agreement of the served probabilities. Random weights.

    .venv/bin/python benchmarks/classifier_runtimes.py [--arch efficientnet_b0] [--size 224] [--batch 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import timed
from models.classifier.on_runtime import on_runtime
from models.classifier.timm_classifier import TimmClassifier
from models.runtimes import FidelityFloors, RuntimeUnavailableError
from models.runtimes.fidelity import fidelity_frames

NO_FLOORS = FidelityFloors(mean_cosine=-1.0, verdict_agreement=0.0)  # measure everything, judge afterwards


def frames_per_second(predict, frames: list[np.ndarray], batch: int, repeats: int) -> float:
    predict(frames[:batch], batch)  # warm-up
    seconds = timed(lambda: [predict(frames, batch) for _ in range(repeats)])
    return len(frames) * repeats / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", default="onnx,onnx-int8,openvino,openvino-bf16,torch-bf16")
    args = parser.parse_args()
    torch.manual_seed(0)
    classifier = TimmClassifier.create(args.arch, pretrained=False, image_size=args.size, device="cpu")
    frames = list(fidelity_frames(args.frames, (args.size, args.size), seed=7))
    reference = classifier.predict_proba(frames, args.batch)
    floors = FidelityFloors()
    threads = torch.get_num_threads()
    print(f"{args.arch} at {args.size}px, batch {args.batch}, {args.frames} frames x {args.repeats}, {threads} threads")
    print(f"{'runtime':<14} {'torch fp32/s':>12} {'frames/s':>9} {'ratio':>6} {'max |dp|':>9}  fidelity")
    with tempfile.TemporaryDirectory() as cache:
        for runtime in args.runtimes.split(","):
            try:
                fast = on_runtime(classifier, runtime, Path(cache), f"bench-{args.arch}", NO_FLOORS)
            except RuntimeUnavailableError as exc:
                print(f"{runtime:<14} unavailable: {exc}")
                continue
            baseline = frames_per_second(classifier.predict_proba, frames, args.batch, args.repeats)
            speed = frames_per_second(fast.predict_proba, frames, args.batch, args.repeats)
            gap = float(np.abs(fast.predict_proba(frames, args.batch) - reference).max())
            verdict = "passes" if fast.fidelity.passes(floors) else "REFUSED by the default floors"
            print(
                f"{runtime:<14} {baseline:>12.1f} {speed:>9.1f} {speed / baseline:>5.2f}x {gap:>9.5f}  "
                f"{fast.fidelity.describe()}; {verdict}"
            )


if __name__ == "__main__":
    main()
