"""The whole loop on real frames through Label Studio: zero-shot, then webhook-triggered training, then held-out
quality of the active classifier next to zero-shot on the same frames.

Reads ../shared/data/nornickel-dev (81 industrial frames, labels from dirt masks, `group` per clip or day);
skips with a message when it is absent. Groups never straddle the train/held-out split.

    .venv/bin/python benchmarks/real_quality.py [--model ViT-B-16] [--pretrained openai] [--kind probe]
"""

from __future__ import annotations

import argparse
import csv
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis

from backend.labelstudio import LabelStudioClient
from backend.launcher import (
    REPO_ROOT,
    LabelStudioLogin,
    free_port,
    personal_access_token,
    start_backend,
    start_label_studio,
    start_worker,
    stop,
    wait_healthy,
)
from backend.quickstart import worker_env
from training.grouping import grouped_split
from training.metrics import binary_metrics

DATA = REPO_ROOT.parent / "shared" / "data" / "nornickel-dev"
CONFIG = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()


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
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    if not (DATA / "manifest.csv").is_file():
        print(f"skipped: {DATA} is absent (real frames are not part of the repository)")
        return
    rows = list(csv.DictReader((DATA / "manifest.csv").open()))
    labels = np.array([r["label"] == "dirty" for r in rows], dtype=int)
    groups = np.array([r["group"] for r in rows])
    train, held_out = grouped_split(labels, groups, val_fraction=0.3, seed=0)
    print(
        f"{len(rows)} frames, {labels.sum()} dirty; training part {len(train)}, held-out part {len(held_out)} "
        f"({len(set(groups[held_out]))} groups, none shared)"
    )

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    processes = []
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        ls_port, backend_port = free_port(), free_port()
        login = LabelStudioLogin(
            f"http://127.0.0.1:{ls_port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
        )
        try:
            processes.append(start_label_studio(ls_port, state / "ls", login, state / "ls.log"))
            wait_healthy(login.url, 300, processes[-1], state / "ls.log")
            pat = personal_access_token(login.url, login.token, state / "pat")
            env = {
                "LENSGUARD_LABEL_STUDIO_URL": login.url,
                "LENSGUARD_LABEL_STUDIO_API_KEY": pat,
                "LENSGUARD_CLIP_MODEL": args.model,
                "LENSGUARD_CLIP_PRETRAINED": args.pretrained,
                "LENSGUARD_ALLOW_RANDOM_WEIGHTS": "true",
                "LENSGUARD_DATA_DIR": str(state / "lensguard"),
                "LENSGUARD_REDIS_URL": redis_url,
                "LENSGUARD_COMBINE": "classifier",
                "LENSGUARD_AUTO_TRAIN_KINDS": args.kind,
                "LENSGUARD_TRAIN_MIN_NEW_ANNOTATIONS": "1000000",  # one START_TRAINING after all labels
                "LENSGUARD_TRAIN_RETRIES": "0",
            }
            backend_url = f"http://127.0.0.1:{backend_port}"
            processes.append(start_backend(backend_port, env, state / "backend.log"))
            wait_healthy(backend_url, 600, processes[-1], state / "backend.log")
            health = httpx.get(f"{backend_url}/health").json()
            for warning in health["warnings"]:
                print(f"WARNING: {warning}")
            processes.append(start_worker(worker_env(env, health), state / "worker.log"))

            client = LabelStudioClient(login.url, pat)
            project = client.sdk.projects.create(title="nornickel-dev", label_config=CONFIG).id
            client.ensure_ml_backend(project, backend_url)
            client.upload_images(project, [DATA / r["image"] for r in rows])
            by_name = {t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]: t for t in client.tasks(project)}
            tasks = [by_name[Path(r["image"]).name] for r in rows]
            for task, row in zip(tasks, rows, strict=True):
                client.request(
                    "PATCH", f"/api/tasks/{task['id']}", json={"data": {**task["data"], "group": row["group"]}}
                )
            held_ids = {tasks[i]["id"] for i in held_out}

            client.retrieve_predictions(project, sorted(held_ids))
            zero_shot = wait_predictions(client, project, "zeroshot-", held_ids)

            for i in train:
                label = "dirty" if labels[i] else "clean"
                client.annotate(
                    tasks[i]["id"],
                    [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
                )
            [ml] = client.request("GET", "/api/ml", params={"project": project}).json()
            client.request("POST", f"/api/ml/{ml['id']}/train")
            auth_free = httpx.Client(base_url=backend_url, timeout=30)
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                jobs = auth_free.get("/jobs").json()["jobs"]
                if jobs and jobs[0]["status"] in ("finished", "failed"):
                    break
                time.sleep(2)
            job = jobs[0]
            if job["status"] != "finished" or job["result"]["status"] not in ("promoted", "kept"):
                sys.exit(f"training did not produce a version: {job}")
            version = job["result"]["version"]
            print(f"trained {version}: validation {job['result']['metrics']}")
            client.retrieve_predictions(project, sorted(held_ids))
            trained = wait_predictions(client, project, version, held_ids)

            y = labels[held_out]
            ids = [tasks[i]["id"] for i in held_out]
            print(f"\nheld-out part ({len(y)} frames, {y.sum()} dirty), threshold 0.5, model {health['model_version']}")
            report("zero-shot (CLIP prompts)", y, np.array([p_dirty(zero_shot[t]) for t in ids]))
            report(f"active {args.kind}", y, np.array([p_dirty(trained[t]) for t in ids]))
        finally:
            for process in reversed(processes):
                stop(process)


if __name__ == "__main__":
    main()
