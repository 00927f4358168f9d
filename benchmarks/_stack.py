"""A throwaway local stack for real-data checks: Label Studio, the backend and a worker, plus the dev set."""

from __future__ import annotations

import csv
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks._common import benchmark_redis
from labelstudio.client import LabelStudioClient
from lensguard.launcher import (
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
from lensguard.quickstart import NORNICKEL_DEV as DEV_SET
from lensguard.quickstart import worker_env
from training.grouping import grouped_split

SOILING_XML = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()


@dataclass
class Stack:
    client: LabelStudioClient
    backend_url: str
    env: dict[str, str]
    health: dict
    state: Path
    basic_auth: tuple[str, str]  # the backend's credentials: basic auth for Label Studio's ML connection...
    api_token: str  # ...and the bearer token for the webhook and these scripts

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def connect(self, project: int) -> dict:
        url = self.backend_url
        return self.client.ensure_ml_backend(project, url, basic_auth=self.basic_auth, api_token=self.api_token)


def dev_set_rows() -> list[dict] | None:
    """The real dev frames' manifest, or None (with a message) where the folder is absent."""
    if not (DEV_SET / "manifest.csv").is_file():
        print(f"skipped: {DEV_SET} is absent (real frames are not part of the repository)")
        return None
    return list(csv.DictReader((DEV_SET / "manifest.csv").open()))


def dev_set_split(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, training-part indices, held-out indices): 30% held out by group, no group on both sides."""
    labels = np.array([r["label"] == "dirty" for r in rows], dtype=int)
    groups = np.array([r["group"] for r in rows])
    train, held_out = grouped_split(labels, groups, val_fraction=0.3, seed=0)
    print(
        f"{len(rows)} frames, {labels.sum()} dirty; training part {len(train)}, held-out part {len(held_out)} "
        f"({len(set(groups[held_out]))} groups, none shared)"
    )
    return labels, train, held_out


def inner_split(rows: list[dict], labels: np.ndarray, train_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inner training, inner validation) indices: a grouped 25% of the training part for early stopping, as
    the training job's own inner split (the held-out part stays untouched)."""
    groups = np.array([r["group"] for r in rows])
    inner_t, inner_v = grouped_split(labels[train_part], groups[train_part], val_fraction=0.25, seed=0)
    return train_part[inner_t], train_part[inner_v]


@contextmanager
def local_stack(state: Path, redis: str | None, settings: dict[str, str]) -> Iterator[Stack]:
    """`redis`: a database the stack may flush (default: a private redis-server, see `benchmark_redis`)."""
    redis_url = benchmark_redis(redis)
    ls_port, backend_port = free_port(), free_port()
    login = LabelStudioLogin(
        f"http://127.0.0.1:{ls_port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
    )
    processes = []
    try:
        processes.append(start_label_studio(ls_port, state / "ls", login, state / "ls.log"))
        wait_healthy(login.url, 300, processes[-1], state / "ls.log")
        pat = personal_access_token(login.url, login.token, state / "pat")
        basic_auth, api_token = ("labelstudio", secrets.token_urlsafe(16)), secrets.token_urlsafe(32)
        env = {
            "LENSGUARD_API_TOKEN": api_token,
            "LENSGUARD_BASIC_AUTH_USER": basic_auth[0],
            "LENSGUARD_BASIC_AUTH_PASS": basic_auth[1],
            "LENSGUARD_LABEL_STUDIO_URL": login.url,
            "LENSGUARD_LABEL_STUDIO_API_KEY": pat,
            "LENSGUARD_ALLOW_RANDOM_WEIGHTS": "true",
            "LENSGUARD_DATA_DIR": str(state / "lensguard"),
            "LENSGUARD_REDIS_URL": redis_url,
            "LENSGUARD_TRAIN_MIN_NEW_ANNOTATIONS": "1000000",  # one START_TRAINING after all labels
            "LENSGUARD_PREANNOTATE_ON_IMPORT": "false",
            "LENSGUARD_TRAIN_RETRIES": "0",
            **{f"LENSGUARD_{k.upper()}": v for k, v in settings.items()},
        }
        backend_url = f"http://127.0.0.1:{backend_port}"
        processes.append(start_backend(backend_port, env, state / "backend.log"))
        wait_healthy(backend_url, 600, processes[-1], state / "backend.log")
        health = httpx.get(f"{backend_url}/health").json()
        for warning in health["warnings"]:
            print(f"WARNING: {warning}")
        processes.append(start_worker(worker_env(env, health), state / "worker.log"))
        yield Stack(LabelStudioClient(login.url, pat), backend_url, env, health, state, basic_auth, api_token)
    finally:
        for process in reversed(processes):
            stop(process)


def import_dev_frames(client: LabelStudioClient, project: int, rows: list[dict]) -> list[dict]:
    """Upload the frames, give each task its `group`, and return the tasks in manifest order."""
    client.upload_images(project, [DEV_SET / r["image"] for r in rows])
    by_name = {t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]: t for t in client.tasks(project)}
    tasks = [by_name[Path(r["image"]).name] for r in rows]
    for task, row in zip(tasks, rows, strict=True):
        client.request("PATCH", f"/api/tasks/{task['id']}", json={"data": {**task["data"], "group": row["group"]}})
    return tasks


def start_training_and_wait(stack: Stack, project: int, kinds: int = 1, timeout: float = 3600) -> list[dict]:
    [ml] = stack.client.request("GET", "/api/ml", params={"project": project}).json()
    stack.client.request("POST", f"/api/ml/{ml['id']}/train")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{stack.backend_url}/jobs", headers=stack.headers, timeout=30).json()["jobs"]
        jobs = [j for j in jobs if j["project"] == str(project)]
        if len(jobs) >= kinds and all(j["status"] in ("finished", "failed") for j in jobs):
            return jobs
        time.sleep(2)
    raise SystemExit(f"training did not finish in {timeout:.0f}s")
