"""The one interface every VLM family implements: frames in, one validated answer per frame out."""

from __future__ import annotations

import copy
import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.vlm.answer import VlmAnswer
from models.vlm.config import VlmConfig
from models.vlm.loading import LoadedVlm

ImageInput = Image.Image | np.ndarray


def _model_identity(config: VlmConfig, loaded: LoadedVlm) -> str:
    name = Path(config.model.rstrip("/")).name
    if loaded.random_weights:
        return f"{name}-RANDOM"
    if loaded.weights.startswith("dir:"):
        config_file = Path(config.model).expanduser() / "config.json"
        stat = config_file.stat()
        digest = hashlib.sha256(f"{config_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        return f"{name}-{digest[:6]}"
    return name


class VlmExplainer(ABC):
    """Thread-safe: one model per process, requests from several threads take turns."""

    def __init__(self, loaded: LoadedVlm, config: VlmConfig):
        self.loaded = loaded
        self.config = config
        self.version = f"vlm-{_model_identity(config, loaded)}"
        self._lock = threading.Lock()

    @property
    def warnings(self) -> list[str]:
        return self.loaded.warnings

    def explain(self, images: Sequence[ImageInput], soiling_types: Sequence[str]) -> list[VlmAnswer]:
        """One answer per frame, in order; a frame whose answer cannot be read is "unparsed", never an exception."""
        frames = [image if isinstance(image, Image.Image) else Image.fromarray(image) for image in images]
        frames = [frame.convert("RGB") for frame in frames]
        answers: list[VlmAnswer] = []
        size = max(1, self.config.batch_size)
        with self._lock:
            for start in range(0, len(frames), size):
                answers.extend(self._explain_batch(frames[start : start + size], tuple(soiling_types)))
        return answers

    @abstractmethod
    def _explain_batch(self, images: list[Image.Image], soiling_types: tuple[str, ...]) -> list[VlmAnswer]: ...

    def _generate(
        self, inputs, max_new_tokens: int, with_scores: bool = False
    ) -> tuple[list[str], torch.Tensor | None]:
        """Greedy batched generation; the decoded new text per row, and the first step's logits if asked."""
        model, processor = self.loaded.model, self.loaded.processor
        inputs = inputs.to(self.loaded.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.loaded.dtype)
        generation = copy.deepcopy(model.generation_config)
        generation.update(
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            output_scores=with_scores,
        )
        if generation.pad_token_id is None:
            generation.pad_token_id = processor.tokenizer.pad_token_id
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=generation)
        new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
        texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
        first_scores = output.scores[0].float() if with_scores and output.scores else None
        return [text.strip() for text in texts], first_scores
