"""The whole loop on real frames through Label Studio: zero-shot, then webhook-triggered training, then held-out
quality of the active classifier next to zero-shot on the same frames.

Reads ../shared/data/nornickel-dev (81 industrial frames, labels from dirt masks, `group` per clip or day);
skips with a message when it is absent. Groups never straddle the train/held-out split.

    .venv/bin/python benchmarks/real_quality.py [--model ViT-B-16] [--pretrained openai] [--kind probe]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._stack import (
    SOILING_XML,
    dev_set_rows,
    dev_set_split,
    import_dev_frames,
    local_stack,
    start_training_and_wait,
)
from labelstudio.client import LabelStudioClient
from training.metrics import binary_metrics


def p_dirty(prediction: dict) -> float:
    region = next(r for r in prediction["result"] if r["from_name"] == "soiling")
    return region["score"] if region["value"]["choices"] == ["dirty"] else 1.0 - region["score"]


def wait_predictions(client: LabelStudioClient, project: int, version_prefix: str, task_ids: set[int]) -> dict:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        found = {
            p["task"]: p
            for p in client.predictions(project)
            if p["model_version"].startswith(version_prefix) and p["task"] in task_ids
        }
        if set(found) == task_ids:
            return found
        time.sleep(2)
    raise SystemExit(f"predictions of {version_prefix} missing for {len(task_ids - set(found))} tasks")


def report(name: str, labels: np.ndarray, scores: np.ndarray) -> None:
    m = binary_metrics(labels, scores, threshold=0.5)
    print(
        f"{name:<28} ROC-AUC {m['roc_auc']:.3f}  balanced acc {m['balanced_accuracy']:.3f}  "
        f"confusion [[TN FP] [FN TP]] = {m['confusion_matrix']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--kind", default="probe", choices=["probe", "finetune"])
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    args = parser.parse_args()
    rows = dev_set_rows()
    if rows is None:
        return
    labels, train, held_out = dev_set_split(rows)
    settings = {
        "clip_model": args.model,
        "clip_pretrained": args.pretrained,
        "combine": "classifier",
        "auto_train_kinds": args.kind,
    }
    with tempfile.TemporaryDirectory() as state_dir, local_stack(Path(state_dir), args.redis, settings) as stack:
        client = stack.client
        project = client.sdk.projects.create(title="nornickel-dev", label_config=SOILING_XML).id
        stack.connect(project)
        tasks = import_dev_frames(client, project, rows)
        held_ids = {tasks[i]["id"] for i in held_out}

        client.retrieve_predictions(project, sorted(held_ids))
        zero_shot = wait_predictions(client, project, "zeroshot-", held_ids)
        for i in train:
            label = "dirty" if labels[i] else "clean"
            client.annotate(
                tasks[i]["id"],
                [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
            )
        [job] = start_training_and_wait(stack, project)
        if job["status"] != "finished" or job["result"]["status"] not in ("promoted", "kept"):
            sys.exit(f"training did not produce a version: {job}")
        version = job["result"]["version"]
        print(f"trained {version}: validation {job['result']['metrics']}")
        client.retrieve_predictions(project, sorted(held_ids))
        trained = wait_predictions(client, project, version, held_ids)

        y = labels[held_out]
        ids = [tasks[i]["id"] for i in held_out]
        print(
            f"\nheld-out part ({len(y)} frames, {y.sum()} dirty), threshold 0.5, model {stack.health['model_version']}"
        )
        report("zero-shot (CLIP prompts)", y, np.array([p_dirty(zero_shot[t]) for t in ids]))
        report(f"active {args.kind}", y, np.array([p_dirty(trained[t]) for t in ids]))


if __name__ == "__main__":
    main()
