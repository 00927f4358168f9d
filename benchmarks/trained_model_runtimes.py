"""The trained models on each runtime: the fine-tuned timm classifier (predict_proba) and the segmenter (class
probabilities, windows blended) on decoded frames at their input size; frames/s, the ratio to fp32 PyTorch
measured right before each runtime (adjacent baseline: the machine's load drifts), the largest probability
difference and the fidelity figures. Random weights.

    .venv/bin/python benchmarks/trained_model_runtimes.py [--arch efficientnet_b0] [--size 224]
        [--segmenter Unet/resnet18] [--segmenter-size 512x256] [--batch 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import timed
from models.classifier.on_runtime import on_runtime as classifier_on_runtime
from models.classifier.timm_classifier import TimmClassifier
from models.runtimes import FidelityFloors, RuntimeUnavailableError
from models.runtimes.fidelity import fidelity_frames
from models.segmenter import Segmenter
from models.segmenter.on_runtime import on_runtime as segmenter_on_runtime

NO_FLOORS = FidelityFloors(mean_cosine=-1.0, verdict_agreement=0.0)  # measure everything, judge afterwards


def frames_per_second(predict, frames: list[np.ndarray], batch: int, repeats: int) -> float:
    predict(frames[:batch], batch)  # warm-up
    seconds = timed(lambda: [predict(frames, batch) for _ in range(repeats)])
    return len(frames) * repeats / seconds


def compare(title: str, reference_model, predict_name: str, accelerate, frames, args) -> None:
    floors = FidelityFloors()
    print(f"{title}, batch {args.batch}, {len(frames)} frames x {args.repeats}, {torch.get_num_threads()} threads")
    print(f"{'runtime':<14} {'torch fp32/s':>12} {'frames/s':>9} {'ratio':>6} {'max |dp|':>9}  fidelity")
    reference = getattr(reference_model, predict_name)(frames, args.batch)
    with tempfile.TemporaryDirectory() as cache:
        for runtime in args.runtimes.split(","):
            try:
                fast = accelerate(reference_model, runtime, Path(cache), "bench", NO_FLOORS)
            except RuntimeUnavailableError as exc:
                print(f"{runtime:<14} unavailable: {exc}")
                continue
            baseline = frames_per_second(getattr(reference_model, predict_name), frames, args.batch, args.repeats)
            speed = frames_per_second(getattr(fast, predict_name), frames, args.batch, args.repeats)
            gap = float(np.abs(getattr(fast, predict_name)(frames, args.batch) - reference).max())
            verdict = "passes" if fast.fidelity.passes(floors) else "REFUSED by the default floors"
            print(
                f"{runtime:<14} {baseline:>12.1f} {speed:>9.1f} {speed / baseline:>5.2f}x {gap:>9.5f}  "
                f"{fast.fidelity.describe()}; {verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--segmenter", default="Unet/resnet18", help="ARCH/ENCODER; empty to skip")
    parser.add_argument("--segmenter-size", default="512x256")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runtimes", default="onnx,onnx-int8,openvino,openvino-bf16,torch-bf16")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.arch:
        classifier = TimmClassifier.create(args.arch, pretrained=False, image_size=args.size, device="cpu")
        frames = list(fidelity_frames(args.frames, (args.size, args.size), seed=7))
        compare(
            f"classifier {args.arch} at {args.size}px", classifier, "predict_proba", classifier_on_runtime, frames, args
        )
    if args.segmenter:
        arch, encoder = args.segmenter.split("/")
        size = tuple(int(v) for v in args.segmenter_size.split("x"))
        segmenter = Segmenter.create(arch, encoder, None, size, device="cpu")
        frames = list(fidelity_frames(args.frames, size, seed=7))
        title = f"segmenter {arch}/{encoder} at {size[0]}x{size[1]}"
        compare(title, segmenter, "predict_probabilities", segmenter_on_runtime, frames, args)


if __name__ == "__main__":
    main()
