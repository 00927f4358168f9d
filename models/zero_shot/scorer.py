"""Zero-shot soiling scores from open_clip embeddings: ensembled prompts, CLIP softmax or SigLIP sigmoid."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.runtimes.batching import DynamicBatcher
from models.runtimes.selection import OpenedRuntime
from models.runtimes.torch_encoder import TorchEncoder
from models.verdict import binary_uncertainty, recentre
from models.zero_shot.loading import LoadedClip
from models.zero_shot.prompts import PromptSet
from models.zero_shot.runtime import clip_tower


@dataclass(frozen=True)
class ZeroShotResult:
    p_dirty: float
    uncertainty: float
    type_scores: dict[str, float]

    @property
    def is_dirty(self) -> bool:
        return self.p_dirty >= 0.5

    @property
    def confidence(self) -> float:
        return 1.0 - self.uncertainty


def clip_class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """CLIP was trained with a softmax over captions: classes compete."""
    return logits.softmax(dim=-1)


def siglip_class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """SigLIP was trained with an independent sigmoid per (image, caption) pair, bias included.

    Each class gets its own match probability; for mutually exclusive classes they are normalised to sum to
    one. Unlike a softmax this keeps the learned bias: two weak matches stay weak relative to a strong one.
    """
    matches = logits.sigmoid()
    return matches / matches.sum(dim=-1, keepdim=True).clamp_min(1e-12)


class ZeroShotScorer:
    """Scores image embeddings against a prompt set; text embeddings are computed once per prompt group."""

    def __init__(
        self, clip: LoadedClip, prompt_set: PromptSet, batch_size: int = 32, runtime: OpenedRuntime | None = None
    ):
        self.clip = clip
        self.prompt_set = prompt_set
        self.batch_size = batch_size
        self.runtime = runtime or OpenedRuntime(TorchEncoder(clip_tower(clip), clip.device), "torch", None)
        self._text_cache: dict[tuple[tuple[str, ...], ...], torch.Tensor] = {}
        self._batcher: DynamicBatcher[np.ndarray, np.ndarray] | None = None
        model = clip.model
        self._logit_scale = float(model.logit_scale.exp().item())
        bias = getattr(model, "logit_bias", None)
        self._logit_bias = None if bias is None else float(bias.item())

    def with_prompt_set(self, prompt_set: PromptSet) -> ZeroShotScorer:
        """The same model with other prompts; text embeddings already computed stay shared."""
        other = ZeroShotScorer(self.clip, prompt_set, self.batch_size, self.runtime)
        other._text_cache = self._text_cache
        other._batcher = self._batcher
        return other

    @property
    def encoder_identity(self) -> str:
        """Runtimes whose embeddings match fp32 torch's share its identity; bf16/int8 ones get their own."""
        identity = f"{self.clip.identity}/squash{self.clip.image_size[0]}x{self.clip.image_size[1]}"
        return identity if self.runtime.interchangeable else f"{identity}/{self.runtime.runtime}"

    @property
    def version(self) -> str:
        weights = "RANDOM" if self.clip.random_weights else self.clip.weights.replace("/", "-")
        model = self.clip.spec.model_name.removeprefix("hf-hub:").replace("/", "-")
        runtime = "" if self.runtime.interchangeable else f"-{self.runtime.runtime}"
        return f"zeroshot-{model}-{weights}-{self.prompt_set.tag}{runtime}"

    # images ---------------------------------------------------------------------------------------------
    def _autocast(self):
        if self.clip.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def start_batching(self, max_wait_s: float = 0.005) -> None:
        """From now on concurrent `encode_images` calls share batches in one loop (no lock around the model)."""
        if self._batcher is None:
            self._batcher = DynamicBatcher(self._encode_batch, self.batch_size, max_wait_s, name="encoder-batcher")

    def stop_batching(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None

    @property
    def batching(self) -> DynamicBatcher | None:
        return self._batcher

    def _encode_batch(self, pixels: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.runtime.encoder.encode(np.stack(pixels)))

    def encode_images(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 HxWx3 arrays (from `preprocess`) -> L2-normalised float32 embeddings, through the runtime."""
        if not len(pixels):
            return np.zeros((0, 0), np.float32)
        if self._batcher is not None:
            return np.stack(self._batcher.submit(list(pixels)))
        return np.concatenate(
            [
                self.runtime.encoder.encode(np.stack(pixels[start : start + self.batch_size]))
                for start in range(0, len(pixels), self.batch_size)
            ]
        )

    def encode_tensor(self, frames: torch.Tensor) -> np.ndarray:
        """uint8 (N, H, W, 3) frames already on the model's device (GPU-side decoding); torch runtimes only."""
        encoder = self.runtime.encoder
        if not isinstance(encoder, TorchEncoder):
            raise TypeError(f"runtime {encoder.runtime} takes numpy frames, not device tensors")
        chunks = [
            encoder.encode_tensor(frames[i : i + self.batch_size]) for i in range(0, len(frames), self.batch_size)
        ]
        return torch.cat(chunks).cpu().numpy()

    def verdicts(self, embeddings: np.ndarray) -> np.ndarray:
        """Dirty or not per embedding: what fidelity's verdict agreement compares."""
        return np.array([result.is_dirty for result in self.score(embeddings)], dtype=bool)

    # text -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def class_embeddings(self, prompt_groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """One embedding per group: the mean of its normalised prompt embeddings, renormalised."""
        key = tuple(tuple(group) for group in prompt_groups)
        if key not in self._text_cache:
            flat = [prompt for group in key for prompt in group]
            tokens = self.clip.tokenizer(flat).to(self.clip.device)
            with self._autocast():
                text = self.clip.model.encode_text(tokens, normalize=True).float().cpu()
            groups, start = [], 0
            for group in key:
                mean = text[start : start + len(group)].mean(dim=0)
                groups.append(mean / mean.norm())
                start += len(group)
            self._text_cache[key] = torch.stack(groups)
        return self._text_cache[key]

    def _logits(self, embeddings: np.ndarray, prompt_groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Scaled cosine similarities, with SigLIP's learned bias added where the model has one."""
        images = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        logits = images @ self.class_embeddings(prompt_groups).T * self._logit_scale
        return logits if self._logit_bias is None else logits + self._logit_bias

    def class_probabilities(self, embeddings: np.ndarray, prompt_groups: Sequence[Sequence[str]]) -> np.ndarray:
        """(n_images, n_groups) probabilities of exclusive classes, with the head the model was trained with."""
        logits = self._logits(embeddings, prompt_groups)
        if self._logit_bias is not None:
            return siglip_class_probabilities(logits).numpy()
        return clip_class_probabilities(logits).numpy()

    def type_probabilities(self, embeddings: np.ndarray, type_labels: Sequence[str]) -> np.ndarray:
        """Soiling types are not exclusive: SigLIP scores each independently, CLIP shares mass among them."""
        logits = self._logits(embeddings, [self.prompt_set.prompts_for_type(label) for label in type_labels])
        if self._logit_bias is not None:
            return logits.sigmoid().numpy()
        return clip_class_probabilities(logits).numpy()

    def score(self, embeddings: np.ndarray, type_labels: Sequence[str] = ()) -> list[ZeroShotResult]:
        classes = self.prompt_set.classes
        p_dirty = self.class_probabilities(embeddings, [classes["clean"], classes["dirty"]])[:, 1]
        p_dirty = recentre(p_dirty, self.prompt_set.threshold)
        uncertainty = binary_uncertainty(p_dirty)
        types = self.type_probabilities(embeddings, type_labels) if type_labels else None
        return [
            ZeroShotResult(
                p_dirty=float(p_dirty[i]),
                uncertainty=float(uncertainty[i]),
                type_scores={} if types is None else dict(zip(type_labels, map(float, types[i]), strict=True)),
            )
            for i in range(len(p_dirty))
        ]
