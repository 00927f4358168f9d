"""Retraining with the VLM's confident verdicts as weighted pseudo-labels: counted apart, never judged on.
RANDOM WEIGHTS: the tiny random CLIP embeds the frames; the labels here come from the tasks."""

from __future__ import annotations

import numpy as np

from labelstudio.images import ImageFetcher
from labelstudio.label_config import parse_soiling_config
from models.pipeline import SoilingPipeline
from training.dataset import build_training_set
from training.progress import JobProgress
from training.synthetic import make_frames
from training.train_job import human_only


def annotated(task_id: int, label: str | None) -> dict:
    task = {"id": task_id, "project": 1, "data": {"image": f"/data/upload/1/f{task_id}.jpg"}, "annotations": []}
    if label:
        region = {"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}
        task["annotations"] = [{"id": task_id, "result": [region], "was_cancelled": False}]
    return task


def test_vlm_pseudo_labels_join_unlabelled_frames_only_and_are_counted_apart(file_server, tiny_clip, soiling_config):
    for i, frame in enumerate(make_frames(5, 160, 90, seed=3)):
        file_server.files[f"/data/upload/1/f{i}.jpg"] = frame.jpeg()
    tasks = [annotated(0, "clean"), annotated(1, "dirty"), annotated(2, None), annotated(3, None), annotated(4, None)]
    vlm = {1: (0, 0.3), 2: (1, 0.3), 3: (0, 0.3)}  # task 1 has a human label: the human wins
    data = build_training_set(
        tasks,
        parse_soiling_config(soiling_config),
        SoilingPipeline(tiny_clip, None),
        ImageFetcher(file_server.url, None),
        JobProgress(),
        vlm_pseudo_labels=vlm,
    )
    by_task = {e.task["id"]: e for e in data.examples}
    assert sorted(by_task) == [0, 1, 2, 3], "task 4 has neither a label nor a VLM verdict"
    assert (by_task[1].label, by_task[1].source, by_task[1].weight) == (1, "human", 1.0)
    assert (by_task[2].label, by_task[2].source, by_task[2].weight) == (1, "vlm-pseudo", 0.3)
    assert by_task[3].label == 0 and by_task[3].source == "vlm-pseudo"
    assert data.summary["vlm_pseudo_labels"] == 2 and data.summary["pseudo_labels"] == 0
    validation = human_only(data, np.arange(len(data.examples)))
    assert [data.examples[i].source for i in validation] == ["human", "human"]
