"""Groups of near-duplicate frames, so a train/validation split never puts one scene on both sides."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from labelstudio.tasks import metadata_group


class SplitError(ValueError):
    pass


def dhash(image_bytes: bytes, size: int = 8) -> int:
    """64-bit difference hash: robust to compression and small changes, equal for consecutive frames."""
    image = Image.open(io.BytesIO(image_bytes))
    image.draft("L", (size * 4, size * 4))
    pixels = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR), np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hash_groups(hashes: Sequence[int], max_distance: int = 10) -> list[int]:
    """Connected components of frames whose hashes differ in at most `max_distance` bits."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    values = np.array(hashes, dtype=np.uint64)
    for i in range(n):
        distances = np.array([bin(int(x)).count("1") for x in values[i + 1 :] ^ values[i]], dtype=np.int32)
        for j in np.nonzero(distances <= max_distance)[0]:
            parent[find(i)] = find(i + 1 + int(j))
    return [find(i) for i in range(n)]


def assign_groups(tasks: Sequence[dict], hashes: Sequence[int | None], max_distance: int = 10) -> list[str]:
    """Metadata groups where tasks carry them; the rest grouped by perceptual-hash similarity."""
    groups: list[str | None] = [metadata_group(task) for task in tasks]
    unnamed = [i for i, g in enumerate(groups) if g is None and hashes[i] is not None]
    components = hash_groups([hashes[i] for i in unnamed], max_distance)
    first_task: dict[int, object] = {}  # a component is named by its smallest task id: stable across runs
    for i, component in zip(unnamed, components, strict=True):
        task_id = tasks[i].get("id", i)
        first_task[component] = min(first_task.get(component, task_id), task_id)
    for i, component in zip(unnamed, components, strict=True):
        groups[i] = f"phash:{first_task[component]}"
    return [g if g is not None else f"task:{tasks[i].get('id', i)}" for i, g in enumerate(groups)]


def grouped_split(
    labels: Sequence[int], groups: Sequence[str], val_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): stratified by label, no group on both sides, both classes on both."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    n_splits = max(2, round(1 / val_fraction))
    per_class_groups = min(len(set(groups[labels == c])) for c in (0, 1))
    if per_class_groups < 2:
        raise SplitError("need frames of both classes from at least two different groups (scenes) each")
    n_splits = min(n_splits, per_class_groups)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, val in splitter.split(np.zeros(len(labels)), labels, groups):
        if len(set(labels[train])) == 2 and len(set(labels[val])) == 2:
            return train, val
    raise SplitError("no grouped split has both classes on both sides; label more frames from more scenes")
