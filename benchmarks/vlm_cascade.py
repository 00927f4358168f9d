"""The generative VLM's cost: explainer frames/s, and what the cascade costs batch pre-annotation.

Part `explainer` (default): frames/s of `VlmExplainer.explain` for each family and architecture (tiny, and the released
default architecture: Qwen2-VL-2B-Instruct, BLIP-2 OPT-2.7b) with RANDOM weights (none can be downloaded here),
batch 1 and 8, on this machine's device (CPU here; half precision on a GPU). Random weights never write valid
JSON, so the stricter retry is switched off: each figure is one generation of `--new-tokens` tokens per frame
(random weights never stop early); a real model's retries add to it. The processors here use a byte-level
tokenizer (one token per byte of the prompt): the prompt is about 3-4x longer in tokens than with Qwen's own
tokenizer, which makes these figures pessimistic for the prefill.

    .venv/bin/python benchmarks/vlm_cascade.py --part explainer [--architectures tiny,default] [--families qwen2-vl]

Part `preannotate`: end-to-end batch pre-annotation (real Label Studio, Redis, one `lensguard worker`) of the same
frames with the cascade off, then on with a band holding the 10% most uncertain frames (the band is read off the
first run's stored scores). CLIP throughput is the pre-annotation run's frames/s (Label Studio to stored CLIP
predictions); with the cascade on the chunks also pick their band frames and queue VLM jobs, which the worker
takes from the VLM queue once the CLIP chunks are done (their time is printed apart). The VLM there is the tiny
random Qwen2-VL forced on CPU: the figure is the cascade's cost to CLIP throughput, not the VLM's speed.

    .venv/bin/python benchmarks/vlm_cascade.py --part preannotate [--frames 200] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from models.vlm import LoadedVlm, VlmConfig, VlmExplainer, build_random_vlm
from models.vlm.config import resolve_dtype
from models.vlm.factory import EXPLAINERS
from models.vlm.prompts import BLIP2_QUESTION, chat_prompt
from models.zero_shot.loading import resolve_device

TINY_FRAME_PIXELS = 56 * 56 * 4
TYPES = ("mud", "water drops", "dust", "snow", "condensation", "smear")


def synthetic_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(count)]


def in_memory_explainer(family: str, architecture: str, config: VlmConfig) -> VlmExplainer:
    """The explainer the factory would build from a saved directory, without writing gigabytes to disk."""
    model, processor = build_random_vlm(family, architecture, max_pixels=config.max_image_pixels)
    processor.tokenizer.padding_side = "left"
    device = resolve_device(config.device)
    dtype = resolve_dtype(config, device)
    loaded = LoadedVlm(model.to(device=device, dtype=dtype), processor, family, "random", device, dtype)
    return EXPLAINERS[family](loaded, config)


def prompt_tokens(explainer: VlmExplainer) -> int:
    prompt = BLIP2_QUESTION if explainer.loaded.family == "blip2" else chat_prompt(TYPES)
    return len(explainer.loaded.processor.tokenizer(prompt).input_ids)


def explainer_rows(args) -> list[str]:
    rows = []
    for family in args.families.split(","):
        for architecture in args.architectures.split(","):
            config = VlmConfig(
                model=f"random-{family}-{architecture}",
                max_new_tokens=args.new_tokens,
                max_image_pixels=args.pixels,
                retry_unparsed=False,
                force_on_cpu=True,
            )
            started = time.perf_counter()
            explainer = in_memory_explainer(family, architecture, config)
            params = sum(p.numel() for p in explainer.loaded.model.parameters())
            built = time.perf_counter() - started
            print(f"{family} {architecture}: {params / 1e6:.1f}M parameters, built in {built:.0f} s", flush=True)
            explainer.explain(synthetic_frames(1), TYPES)  # warm-up
            for batch in (int(b) for b in args.batches.split(",")):
                explainer.config = replace(config, batch_size=batch)
                frames = synthetic_frames(batch * args.rounds)
                begin = time.perf_counter()
                answers = explainer.explain(frames, TYPES)
                seconds = time.perf_counter() - begin
                assert len(answers) == len(frames)
                rows.append(
                    f"| {family} | {architecture} | {params / 1e6:.1f}M | {explainer.loaded.device} "
                    f"{str(explainer.loaded.dtype).removeprefix('torch.')} | {batch} | {len(frames)} | "
                    f"{len(frames) / seconds:.3f} | {seconds / len(frames):.2f} | {prompt_tokens(explainer)} |"
                )
                print(rows[-1], flush=True)
            del explainer
    return rows


def wait_vlm_jobs(queue, project: int, expected: int, grace: float = 10, timeout: float = 3600) -> float:
    """Seconds until the project's VLM jobs are done and have written `expected` predictions (none within
    `grace` seconds when none is expected)."""
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < timeout:
        jobs = [j for j in queue.jobs(500) if j["kind"] == "vlm" and j["project"] == str(project)]
        done = all(j["status"] in ("finished", "failed") for j in jobs)
        written = sum((j["result"] or {}).get("written", 0) for j in jobs)
        if (jobs and done and written >= expected) or (not jobs and elapsed > grace):
            break
        time.sleep(0.5)
    return time.perf_counter() - start


def preannotate_rows(args) -> list[str]:
    import secrets
    from pathlib import Path

    from benchmarks._common import benchmark_redis, random_clip_env
    from benchmarks.preannotate import run
    from labelstudio.client import LabelStudioClient
    from lensguard.launcher import (
        REPO_ROOT,
        LabelStudioLogin,
        free_port,
        personal_access_token,
        start_label_studio,
        start_worker,
        stop,
        wait_healthy,
    )
    from models.vlm.random_init import save_random_vlm
    from training.queue import JobQueue
    from training.synthetic import make_frames

    config_xml = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
    args.redis = benchmark_redis(args.redis)
    rows = []
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        paths = []
        for i, frame in enumerate(make_frames(args.frames, 1280, 720, dirty_fraction=0.3, seed=123)):
            paths.append(state / f"frame_{i:05d}.jpg")
            paths[-1].write_bytes(frame.jpeg())
        tiny = save_random_vlm("qwen2-vl", state / "tiny-qwen2-vl", "tiny", max_pixels=TINY_FRAME_PIXELS)
        port = free_port()
        login = LabelStudioLogin(
            f"http://127.0.0.1:{port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
        )
        ls = start_label_studio(port, state / "ls", login, state / "ls.log")
        try:
            wait_healthy(login.url, 300, ls, state / "ls.log")
            pat = personal_access_token(login.url, login.token, state / "pat")
            client = LabelStudioClient(login.url, pat)
            queue = JobQueue(args.redis, retries=1)
            band_low = None
            for cascade in ("off", "on"):
                env = {
                    **random_clip_env(login.url, pat, args.model, state / f"lensguard-{cascade}", args.redis),
                    "LENSGUARD_VLM_MODEL": tiny if cascade == "on" else "none",
                    "LENSGUARD_VLM_FORCE_ON_CPU": "true",
                    "LENSGUARD_VLM_MAX_NEW_TOKENS": "16",
                    "LENSGUARD_VLM_MAX_IMAGE_PIXELS": str(TINY_FRAME_PIXELS),
                    "LENSGUARD_VLM_BAND_LOW": str(band_low if band_low is not None else 0.5),
                    "LENSGUARD_VLM_MAX_PER_HOUR": "1000000",
                }
                worker = start_worker(env, state / f"worker-{cascade}.log")
                try:
                    warm = client.sdk.projects.create(title=f"warm-up {cascade}", label_config=config_xml).id
                    client.upload_images(warm, paths[:8])
                    run(queue, client, warm)
                    wait_vlm_jobs(queue, warm, 0, timeout=600)
                    project = client.sdk.projects.create(title=f"cascade {cascade}", label_config=config_xml).id
                    print(f"uploading {len(paths)} frames, cascade {cascade}...", flush=True)
                    client.upload_images(project, paths)
                    seconds = run(queue, client, project)
                    stored = client.predictions(project)
                    uncertainty = sorted(1 - p["score"] for p in stored if "+vlm-" not in p["model_version"])
                    if band_low is None:  # the 10% most uncertain frames of this run make the band of the next
                        band_low = uncertainty[int(len(uncertainty) * 0.9)]
                        sent, vlm_seconds = 0, 0.0
                    else:
                        sent = sum(u >= band_low for u in uncertainty)
                        vlm_seconds = wait_vlm_jobs(queue, project, sent)
                    rows.append((cascade, len(paths) / seconds, sent, vlm_seconds))
                    print(rows[-1], flush=True)
                finally:
                    stop(worker)
        finally:
            stop(ls)
    off, on = rows[0][1], rows[1][1]
    lines = [
        f"{args.frames} frames 1280x720, {args.model} (random weights), one CPU worker; VLM: tiny random Qwen2-VL",
        "| cascade | CLIP pre-annotation frames/s | frames sent to the VLM | VLM jobs after the run (s) |",
        "| --- | --- | --- | --- |",
        *[f"| {c} | {rate:.2f} | {sent} | {vlm:.1f} |" for c, rate, sent, vlm in rows],
        f"cascade on / off: {on / off:.0%} of CLIP-only throughput (target: at least 85%), band u >= {band_low:.3f}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["explainer", "preannotate"], default="explainer")
    parser.add_argument("--frames", type=int, default=200, help="preannotate: frames per run")
    parser.add_argument("--model", default="ViT-B-16", help="preannotate: the CLIP model (random weights)")
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    parser.add_argument("--families", default="qwen2-vl,blip2")
    parser.add_argument("--architectures", default="tiny,default")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=1, help="batches timed per setting")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--pixels", type=int, default=224 * 224, help="max pixels per frame (chat models)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.part == "preannotate":
        print("\n".join(preannotate_rows(args)))
        return
    header = "| family | architecture | params | device | batch | frames | frames/s | s/frame | prompt tokens |"
    print(header + "\n|" + " --- |" * 9, flush=True)
    rows = explainer_rows(args)
    print("\n".join([header, "|" + " --- |" * 9, *rows]))


if __name__ == "__main__":
    main()
