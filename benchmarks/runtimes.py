"""Inference runtimes side by side: frames/s of the bare forward and of bytes -> verdict, fidelity, concurrency.

For each runtime (fp32 PyTorch first, the reference): its batch size calibrated on this machine; frames/s of
the bare image-tower forward on decoded 224x224 frames; frames/s of the whole bytes -> verdict path (JPEG
decode and resize in threads, encoder, prompt scoring) on 1280x720 JPEGs never seen before, no embedding
cache; fidelity vs fp32 PyTorch (cosine mean/min and verdict agreement on the fixed fidelity frame set, and
verdict agreement on the benchmark JPEGs); and 1, 4 and 16 concurrent clients sending one frame per request
through the dynamic batcher. Every ratio is to the fp32 PyTorch bare forward measured in the same run, right
before that runtime's own figures (on a shared machine the load drifts; an adjacent baseline keeps the ratio
honest). ViT-B-16 with seeded random weights unless --model says otherwise.

    .venv/bin/python benchmarks/runtimes.py [--runtimes torch,onnx,onnx-int8,...] [--frames 32]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks._common import timed
from models.frames import decode_image
from models.pipeline import SoilingPipeline
from models.runtimes import FidelityFloors, RuntimeUnavailableError, list_runtimes, open_runtime
from models.runtimes.calibration import calibrate
from models.runtimes.fidelity import fidelity_frames
from models.verdict import Verdict
from models.zero_shot import ClipSpec, ZeroShotScorer, load_clip, load_prompt_set
from models.zero_shot.runtime import clip_encoder_source
from training.synthetic import make_frames

NO_FLOORS = FidelityFloors(mean_cosine=-1.0, verdict_agreement=0.0)  # measure everything, judge afterwards


@dataclass
class Row:
    runtime: str
    batch: int
    baseline: float  # fp32 torch bare forward measured just before this runtime
    bare: float
    full: float
    fidelity: str
    agreement: float  # verdict agreement on the fidelity frame set
    jpeg_agreement: float  # on the benchmark's own JPEGs
    passes: bool
    clients: dict[int, float]


def bare_rate(scorer: ZeroShotScorer, pixels: list[np.ndarray]) -> float:
    scorer.encode_images(pixels[: scorer.batch_size])  # warm-up at the batch shape
    return len(pixels) / timed(lambda: scorer.encode_images(pixels))


def full_rate(pipeline: SoilingPipeline, jpegs: list[bytes], batch: int) -> tuple[float, list[bool]]:
    pipeline.score(jpegs[:batch])  # warm-up
    verdicts: list[bool] = []

    def run() -> None:
        for start in range(0, len(jpegs), batch):
            for outcome in pipeline.score(jpegs[start : start + batch]):
                assert isinstance(outcome, Verdict), outcome
                verdicts.append(outcome.is_dirty)

    return len(jpegs) / timed(run), verdicts


def clients_rate(pipeline: SoilingPipeline, jpegs: list[bytes], clients: int, requests: int) -> float:
    """`clients` threads, each sending `requests` one-frame requests one after the other."""
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        start.wait()
        for r in range(requests):
            outcome = pipeline.score([jpegs[(index * requests + r) % len(jpegs)]])[0]
            assert isinstance(outcome, Verdict), outcome

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return clients * requests / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--runtimes", default=",".join(list_runtimes()))
    parser.add_argument("--frames", type=int, default=32, help="JPEGs per runtime for the bare and full paths")
    parser.add_argument("--clients", default="4,16")
    parser.add_argument("--calibration-budget", type=float, default=20.0)
    parser.add_argument("--fidelity-frames", type=int, default=100)
    parser.add_argument("--runtime-dir", help="reuse exports and fidelity embeddings (default: a fresh temp dir)")
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    if runtimes[0] != "torch":
        runtimes = ["torch", *[r for r in runtimes if r != "torch"]]
    client_counts = [1, *[int(c) for c in args.clients.split(",")]]
    floors = FidelityFloors()

    print(f"making {args.frames} distinct 1280x720 JPEG frames...", flush=True)
    jpegs = [frame.jpeg() for frame in make_frames(args.frames, 1280, 720, seed=99)]
    clip = load_clip(ClipSpec(model_name=args.model, pretrained=None, device="cpu"))
    prompt_set = load_prompt_set("soiling-v1")
    reference = ZeroShotScorer(clip, prompt_set)
    pixels = [decode_image(data, clip.image_size, 10**9) for data in jpegs]
    calibration_frame = fidelity_frames(1, clip.image_size)[0]
    print(f"model {args.model} (seeded random weights), CPU, torch threads {torch.get_num_threads()}", flush=True)

    rows: list[Row] = []
    reference_verdicts: list[bool] = []
    with tempfile.TemporaryDirectory() as scratch:
        source = clip_encoder_source(clip, args.runtime_dir or scratch)
        for name in runtimes:
            started = time.perf_counter()
            try:
                opened = open_runtime(name, source, NO_FLOORS, reference.verdicts, args.fidelity_frames)
            except RuntimeUnavailableError as exc:
                print(f"{name}: not measured ({exc})", flush=True)
                continue
            calibration = calibrate(opened.encoder.encode, calibration_frame, budget_s=args.calibration_budget)
            scorer = ZeroShotScorer(clip, prompt_set, calibration.batch_size, opened)
            pipeline = SoilingPipeline(scorer, cache=None)
            baseline_scorer = scorer if name == "torch" else ZeroShotScorer(clip, prompt_set, rows[0].batch)
            baseline = bare_rate(baseline_scorer, pixels[: max(8, len(pixels) // 2)])
            bare = bare_rate(scorer, pixels)
            full, verdicts = full_rate(pipeline, jpegs, calibration.batch_size)
            if name == "torch":
                reference_verdicts = verdicts
            scorer.start_batching()
            clients = {n: clients_rate(pipeline, jpegs, n, max(1, 16 // n) if n > 1 else 4) for n in client_counts}
            scorer.stop_batching()
            fidelity = opened.fidelity
            jpeg_agreement = float(np.mean(np.array(verdicts) == np.array(reference_verdicts)))
            rows.append(
                Row(
                    name,
                    calibration.batch_size,
                    baseline,
                    bare,
                    full,
                    fidelity.describe() if fidelity else "reference",
                    fidelity.verdict_agreement if fidelity else 1.0,
                    jpeg_agreement,
                    fidelity is None or fidelity.passes(floors),
                    clients,
                )
            )
            rates = ", ".join(f"{b}: {r:.2f}" for b, r in calibration.frames_per_s.items())
            print(
                f"{name}: batch {calibration.batch_size} (frames/s by batch {rates}); fp32 torch bare {baseline:.2f}, "
                f"bare {bare:.2f}, "
                f"bytes->verdict {full:.2f} frames/s; {rows[-1].fidelity}; {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    print("\nx: ratio to the fp32 torch bare forward measured right before the runtime's own figures")
    columns = ["runtime", "batch", "fp32 torch", "bare fr/s", "x", "bytes->verdict", "x"]
    columns += [f"{n} client(s)" for n in client_counts] + ["agree", "agree JPEG", "fidelity"]
    print(" | ".join(columns))
    for row in rows:
        cells = [row.runtime, row.batch, f"{row.baseline:.2f}", f"{row.bare:.2f}", f"{row.bare / row.baseline:.2f}"]
        cells += [f"{row.full:.2f}", f"{row.full / row.baseline:.2f}"]
        cells += [f"{row.clients[n]:.2f}" for n in client_counts]
        cells += [f"{row.agreement:.1%}", f"{row.jpeg_agreement:.1%}", row.fidelity]
        print(" | ".join(map(str, cells)) + ("" if row.passes else "  BELOW FLOORS"))
    best = max((row for row in rows if row.passes), key=lambda row: row.full)
    print(f"\nbest runtime (fastest bytes->verdict meeting the floors): {best.runtime}")
    single = best.clients[1]
    for n in client_counts[1:]:
        print(f"{n} concurrent clients vs one: {best.clients[n] / single:.2f}x (target 1.3x)")
    print("target: speedup at least 2.00 at verdict agreement at least 99%")
    print(f"speedup vs fp32 bare: {best.full / best.baseline:.2f}")
    print(f"verdict agreement: {100 * best.agreement:.1f}%")


if __name__ == "__main__":
    main()
