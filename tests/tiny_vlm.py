"""Tiny RANDOMLY initialised VLMs saved to a local directory, built offline from transformers config classes with
a byte-level tokenizer made from a local vocabulary: what tests point LENSGUARD_VLM_MODEL at."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.vlm.random_init import save_random_vlm

SMALL_FRAME_PIXELS = 56 * 56 * 4  # a handful of visual tokens keeps CPU generation quick


def save_tiny_vlm(family: str, directory: Path | str) -> str:
    return save_random_vlm(family, directory, "tiny", max_pixels=SMALL_FRAME_PIXELS)
