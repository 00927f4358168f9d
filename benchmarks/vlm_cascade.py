"""The generative VLM's cost: explainer frames/s, and what the cascade costs batch pre-annotation.

Part `explainer`: frames/s of `VlmExplainer.explain` for each family and architecture (tiny, and the released
default architecture: Qwen2-VL-2B-Instruct, BLIP-2 OPT-2.7b) with RANDOM weights (none can be downloaded here),
batch 1 and 8, on this machine's device (CPU here; half precision on a GPU). Random weights never write valid
JSON, so the stricter retry is switched off: each figure is one generation of `--new-tokens` tokens per frame
(random weights never stop early); a real model's retries add to it. The processors here use a byte-level
tokenizer (one token per byte of the prompt): the prompt is about 3-4x longer in tokens than with Qwen's own
tokenizer, which makes these figures pessimistic for the prefill.

    .venv/bin/python benchmarks/vlm_cascade.py --part explainer [--architectures tiny,default] [--families qwen2-vl]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["explainer"], default="explainer")
    parser.add_argument("--families", default="qwen2-vl,blip2")
    parser.add_argument("--architectures", default="tiny,default")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=1, help="batches timed per setting")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--pixels", type=int, default=224 * 224, help="max pixels per frame (chat models)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    header = "| family | architecture | params | device | batch | frames | frames/s | s/frame | prompt tokens |"
    print(header + "\n|" + " --- |" * 9, flush=True)
    rows = explainer_rows(args)
    print("\n".join([header, "|" + " --- |" * 9, *rows]))


if __name__ == "__main__":
    main()
