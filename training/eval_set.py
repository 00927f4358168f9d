"""A frozen evaluation set per project: task ids held out of every training run, early stopping, threshold
choice and calibration, so that promotions are decided on the same honest frames for every candidate.

It is frozen by whole groups (near-duplicate scenes) once the project has enough labelled groups of each class,
grows only by whole new groups as labels arrive (a stable hash of the group decides), and never shrinks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from models.registry import ModelRegistry

EVAL_SET_FILE = "eval-set.json"


@dataclass
class EvalSplit:
    evaluation: np.ndarray  # indices (into the run's frames) of the frozen evaluation set
    pool: np.ndarray  # indices the run may train, early-stop, threshold and calibrate on
    version: int
    groups: int  # evaluation groups among this run's frames
    added: int  # evaluation frames added by this run


class EvalSetError(ValueError):
    pass


def _in_eval_by_hash(group: str, fraction: float) -> bool:
    digest = int(_hash_order(group)[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def _hash_order(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()


def freeze_groups(groups: np.ndarray, labels: np.ndarray, fraction: float, min_groups: int) -> set[str]:
    """The first evaluation groups: a stable hash picks about `fraction` of the groups, with at least one group
    of each class, and at least two groups of each class left for training."""
    by_class = {c: sorted(set(groups[labels == c]), key=_hash_order) for c in (0, 1)}
    if min(len(by_class[0]), len(by_class[1])) < min_groups:
        raise EvalSetError(
            f"freezing an evaluation set needs labelled frames of each class from at least {min_groups} groups "
            f"(scenes); found {len(by_class[0])} clean and {len(by_class[1])} dirty"
        )
    chosen = {g for g in set(groups) if _in_eval_by_hash(g, fraction)}
    for c in (0, 1):
        if not chosen & set(by_class[c]):
            chosen.add(by_class[c][0])
    for c in (0, 1):  # keep two groups of each class for the inner train/validation split
        mine = by_class[c]
        while sum(g not in chosen for g in mine) < 2 and sum(g in chosen for g in mine) > 1:
            chosen.discard(next(g for g in reversed(mine) if g in chosen))
    return chosen


def update_eval_set(
    registry: ModelRegistry,
    project: int | str,
    task_ids: list[int],
    groups: list[str],
    labels: np.ndarray,
    human: np.ndarray,
    fraction: float,
    min_groups: int,
) -> EvalSplit:
    """Split this run's frames into the frozen evaluation set and the training pool, growing the stored set.

    `human`: which frames carry a human label; pseudo-labelled frames never enter the evaluation set, and no
    frame of an evaluation group is ever trained on. Call under the project's lock (concurrent jobs).
    """
    groups_arr, labels = np.asarray(groups), np.asarray(labels)
    stored = registry.read_project_file(project, EVAL_SET_FILE)
    if stored is None:
        if not human.any():
            raise EvalSetError("no human labels yet")
        chosen = freeze_groups(groups_arr[human], labels[human], fraction, min_groups)
        eval_tasks: set[int] = set()
        train_tasks: set[int] = set()
        version, history = 0, []
    else:
        eval_tasks, train_tasks = set(stored["tasks"]), set(stored["training_tasks"])
        version, history = stored["version"], stored["history"]
        chosen = set()
    known_eval = {g for t, g in zip(task_ids, groups, strict=True) if t in eval_tasks}
    known_train = {g for t, g in zip(task_ids, groups, strict=True) if t in train_tasks} - known_eval
    evaluation, pool, added = [], [], 0
    for i, (task, group) in enumerate(zip(task_ids, groups, strict=True)):
        if task in eval_tasks or group in known_eval or group in chosen:
            is_eval = True
        elif group in known_train:
            is_eval = False
        else:
            is_eval = stored is not None and _in_eval_by_hash(group, fraction)
        if is_eval and not human[i]:
            continue  # a pseudo-label in an evaluation group: neither evaluated nor trained on
        if is_eval:
            evaluation.append(i)
            if task not in eval_tasks:
                eval_tasks.add(task)
                added += 1
        else:
            pool.append(i)
            if human[i]:
                train_tasks.add(task)
    if added or stored is None:
        version += 1
        history.append({"version": version, "at": datetime.now(UTC).isoformat(), "frames": len(eval_tasks)})
    record = {
        "version": version,
        "tasks": sorted(eval_tasks),
        "training_tasks": sorted(train_tasks - eval_tasks),
        "fraction": fraction,
        "history": history,
    }
    if stored != record:
        registry.write_project_file(project, EVAL_SET_FILE, record)
    evaluation_idx = np.array(evaluation, dtype=int)
    return EvalSplit(evaluation_idx, np.array(pool, dtype=int), version, len(set(groups_arr[evaluation_idx])), added)
