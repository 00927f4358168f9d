"""Training batches through a `torch.utils.data.DataLoader`: frames (and masks) are read one at a time from the
frame cache (or any sequence of arrays) and augmented in worker processes, while the job's process trains; so
memory holds a few batches, not the project, and decoding never starves the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

Augment = Callable[..., dict]


class Picked(Sequence[np.ndarray]):
    """`frames[indices]` without reading them: a view that loads each frame (or a slice of them) on access."""

    def __init__(self, frames: Sequence[np.ndarray], indices: Sequence[int]):
        self.frames, self.indices = frames, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.frames[i] for i in self.indices[index]]
        return self.frames[self.indices[index]]


class Joined(Sequence[np.ndarray]):
    """Two sequences as one (training frames followed by synthetic ones)."""

    def __init__(self, first: Sequence[np.ndarray], second: Sequence[np.ndarray]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self)
        return self.first[index] if index < len(self.first) else self.second[index - len(self.first)]


class LabelledFrames(Dataset):
    """(augmented uint8 HxWx3 frame, label, weight) per index: the classifier's training examples."""

    def __init__(self, frames: Sequence[np.ndarray], labels: np.ndarray, weights: np.ndarray, augment: Augment):
        self.frames, self.labels, self.weights, self.augment = frames, labels, weights, augment

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[np.ndarray, float, float]:
        image = self.augment(image=self.frames[index])["image"]
        return image, float(self.labels[index]), float(self.weights[index])


class MaskedFramesDataset(Dataset):
    """(augmented frame, mask) per index, geometry applied to both: the segmenter's training examples. With
    `split`, index i is tile i % per_frame of frame i // per_frame (cut on the fly, never stored)."""

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        augment: Augment,
        split: Callable[[np.ndarray], list[np.ndarray]] | None = None,
        per_frame: int = 1,
    ):
        self.frames, self.masks, self.augment, self.split, self.per_frame = frames, masks, augment, split, per_frame

    def __len__(self) -> int:
        return len(self.frames) * self.per_frame

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        frame, part = divmod(index, self.per_frame)
        image, mask = self.frames[frame], self.masks[frame]
        if self.split is not None:
            image, mask = self.split(image)[part], self.split(mask)[part]
        pair = self.augment(image=image, mask=mask)
        return pair["image"], pair["mask"]


class EpochBatches(Sampler[list[int]]):
    """Each epoch a fresh permutation of `indices` (drawn from one seeded generator, so runs repeat), cut into
    batches; a last batch smaller than `min_batch` is left out (batch norm cannot train on one frame)."""

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int, min_batch: int = 1):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.min_batch = batch_size, min_batch
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.rng.permutation(self.indices)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size].tolist()
            if len(batch) >= self.min_batch or len(batch) == len(order):
                yield batch

    def __len__(self) -> int:
        full, rest = divmod(len(self.indices), self.batch_size)
        return full + int(rest >= self.min_batch or (rest and full == 0))


def worker_rng(seed: int) -> np.random.Generator:
    """A generator for batch-level randomness (cutmix) in a collate function: distinct per DataLoader worker,
    derived from the loader's seed, and `seed`'s own in the job's process."""
    info = get_worker_info()
    return np.random.default_rng(seed if info is None else info.seed % 2**32)


def _init_worker(worker: int) -> None:
    """One thread per worker process: the workers are the parallelism (and OpenCV's pool is not fork-safe)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(
    dataset: Dataset,
    batches: EpochBatches,
    workers: int,
    seed: int,
    collate: Callable[[list], Any] | None = None,
    pin: bool = False,
) -> DataLoader:
    """Batches of `dataset` read by `workers` processes (0: in this one), kept alive across epochs (stop them
    with `stop_workers`); `pin`: page-locked batches for a fast copy to the GPU."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_init_worker if workers else None,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
        generator=generator,
        pin_memory=pin,
    )


def stop_workers(loader: DataLoader) -> None:
    """End a loader's persistent worker processes now (not whenever the loader is garbage collected)."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    loader._iterator = None


def in_chunks(frames: Sequence[np.ndarray], indices: Sequence[int], size: int) -> Iterator[Picked]:
    """`frames[indices]` a chunk at a time (for predictions over a split without loading it whole)."""
    for start in range(0, len(indices), size):
        yield Picked(frames, indices[start : start + size])
