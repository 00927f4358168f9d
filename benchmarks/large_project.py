"""A large Label Studio project (default 100,000 tasks, Label Studio on PostgreSQL): time and peak memory of
every job that reads or writes it.

N tasks are imported as JSON whose image URLs point at a local image server of 1280x720 frames (B generated
frames, each index with its own trailing bytes: distinct content, distinct cache keys). All but 5% already hold
a zero-shot prediction and a cached embedding (the cache and its URL index filled as a pre-annotation run leaves
them; a cached embedding is its base frame's plus noise, standing for distinct scenes); `--labelled` tasks hold
an annotation (the base frame's clean/dirty). Each task names one of `N/2` cameras (`data.camera`).

Phases, each printed with its wall time and the peak RSS (MiB) of the workers (two, as `lensguard up` runs on
two cores), the backend and, for selection, the `lensguard select` process:
  planning            the pre-annotation planning job (lists the tasks without a prediction)
  pre-annotating 5%   the run's chunks: fetch, encode and write the 5% missing
  selection           `lensguard select --strategy combined --budget 500`
  probe training      a probe training job (START_TRAINING)
  re-scoring          the promotion's re-scoring run, until the project's model_version switched (triggered by
                      the probe's promotion, else by a prompt-set promotion: said so); reported also per second
                      of worker time without Label Studio's own write time, and that write time separately

`--page-sizes 100,500` runs the phases once per task page size (fresh workers each time; the 5% are made
unpredicted and uncached again between rounds), so memory can be compared across page sizes. (Label Studio
recounts `total_predictions` after that deletion in a background job; where it runs with a Redis but no
worker of its own, the count stays stale and a later round finds nothing missing.)

    flock /tmp/lensguard-heavy.lock .venv/bin/python -m benchmarks.large_project --tasks 10000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rq import Queue

from benchmarks._common import benchmark_redis, distinct_frame, numbered_image_server, random_clip_env, settings_of
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
from lensguard.postgres import PostgresDatabase
from models.embedding_cache import EmbeddingCache, content_hash
from serving.components import build_serving
from training.prompt_job import use_prompt_set
from training.queue import CLUSTERS_QUEUE, JobQueue
from training.synthetic import make_frames

CONFIG = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
POSTGRES_URL = os.environ.get("LENSGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
MIB = 1024 * 1024


def choice(label: str) -> list[dict]:
    return [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@dataclass
class Frames:
    """Frame `i` is base frame `i % B` plus 4 trailing bytes: a distinct file that decodes to the base frame."""

    base: list[bytes]
    dirty: list[bool]

    def data(self, index: int) -> bytes:
        return distinct_frame(self.base, index)

    def label(self, index: int) -> str:
        return "dirty" if self.dirty[index % len(self.base)] else "clean"


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Sampler:
    """Peak resident memory per role (the largest process of the role), sampled every 0.1 s."""

    roles: dict[str, list[int]] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for role, pids in list(self.roles.items()):
                current = max((rss_mib(pid) for pid in pids), default=0.0)
                self.peaks[role] = max(self.peaks.get(role, 0.0), current)

    def reset(self) -> None:
        self.peaks = {}

    def close(self) -> None:
        self._stop.set()


@dataclass
class Phase:
    name: str
    seconds: float
    peaks: dict[str, float]
    note: str = ""

    def line(self) -> str:
        memory = ", ".join(f"{role} {mib:.0f}" for role, mib in sorted(self.peaks.items()))
        return f"{self.name:<20} {self.seconds:8.1f} s   peak RSS (MiB): {memory}   {self.note}"


@contextmanager
def phase(sampler: Sampler, name: str, phases: list[Phase]) -> Iterator[Phase]:
    sampler.reset()
    record = Phase(name, 0.0, {})
    started = time.perf_counter()
    yield record
    time.sleep(0.2)  # one more sample
    record.seconds, record.peaks = time.perf_counter() - started, dict(sampler.peaks)
    phases.append(record)
    print(record.line(), flush=True)


def wait_for(check: Callable[[], dict | None], what: str, timeout: float = 7200) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"{what} did not finish in {timeout:.0f} s")


def finished_job(queue: JobQueue, job_id: str) -> dict:
    def check() -> dict | None:
        job = queue.job(job_id)
        if job and job["status"] in ("failed", "stopped", "canceled"):
            raise SystemExit(f"{job_id} {job['status']}: {job.get('error')}")
        return job if job and job["status"] == "finished" else None

    return wait_for(check, job_id)


def newest_rescore_run(queue: JobQueue, project: int, after: set[str]) -> dict:
    def check() -> dict | None:
        runs = [j for j in queue.jobs(50) if j["id"].startswith(f"run-{project}-rescore-") and j["id"] not in after]
        return runs[0] if runs and runs[0]["status"] == "finished" and "switched" in runs[0]["result"] else None

    return wait_for(check, "the re-scoring run")


def fill_project(client: LabelStudioClient, project: int, args, frames: Frames, host: str, version: str) -> None:
    """Import the tasks in bulk: 95% predicted by `version`, the first `labelled` of those annotated."""
    rows, labelled = [], 0
    for i in range(args.tasks):
        row: dict = {"data": {"image": f"http://{host}/{i}.jpg", "camera": f"cam-{i % max(args.tasks // 2, 1)}"}}
        if not missing(i):
            row["predictions"] = [{"result": choice("clean"), "score": 0.5, "model_version": version}]
            if labelled < args.labelled:
                row["annotations"] = [{"result": choice(frames.label(i))}]
                labelled += 1
        rows.append(row)
        if len(rows) == 2000 or i == args.tasks - 1:
            client.request("POST", f"/api/projects/{project}/import", json=rows)
            rows = []


def missing(index: int) -> bool:
    return index % 20 == 19  # 5%: no prediction, no cached embedding


def fill_cache(cache_path: Path, args, frames: Frames, host: str, base_vectors: np.ndarray, encoder: str) -> None:
    cache = EmbeddingCache(cache_path)
    rng = np.random.default_rng(0)
    for start in range(0, args.tasks, 5000):
        indices = [i for i in range(start, min(start + 5000, args.tasks)) if not missing(i)]
        vectors = base_vectors[np.array(indices) % len(frames.base)]
        vectors = vectors + rng.normal(0, 0.5 / np.sqrt(vectors.shape[1]), vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        hashes = [content_hash(frames.data(i)) for i in indices]
        cache.put_many(encoder, dict(zip(hashes, vectors, strict=True)))
        cache.remember_urls({f"http://{host}/{i}.jpg": h for i, h in zip(indices, hashes, strict=True)})
    cache.close()


def forget_missing(client: LabelStudioClient, project: int, cache_path: Path, args, frames: Frames, host: str):
    """Between rounds: the 5% lose their predictions (one Data Manager action) and their cache entries."""
    ids = [
        t["id"]
        for t in client.iter_tasks(project, fields=("id", "data"))
        if missing(int(t["data"]["image"].rsplit("/", 1)[1].split(".")[0]))
    ]
    selected = {"all": False, "included": ids}
    params = {"id": "delete_tasks_predictions", "project": project}
    client.request("POST", "/api/dm/actions", params=params, json={"selectedItems": selected})
    urls = [f"http://{host}/{i}.jpg" for i in range(args.tasks) if missing(i)]
    hashes = [content_hash(frames.data(i)) for i in range(args.tasks) if missing(i)]
    with sqlite3.connect(cache_path) as db:
        db.executemany("DELETE FROM urls WHERE url = ?", [(u,) for u in urls])
        db.executemany("DELETE FROM embeddings WHERE content_hash = ?", [(h,) for h in hashes])


def run_round(stack: dict, args, page_size: int, round_index: int) -> list[Phase]:
    client, queue, sampler, state, project = (stack[k] for k in ("client", "queue", "sampler", "state", "project"))
    env = {**stack["env"], "LENSGUARD_TASK_PAGE_SIZE": str(page_size)}
    Queue(CLUSTERS_QUEUE, connection=queue.connection).empty()  # an earlier round's cluster jobs
    processes = [
        start_worker(env, state / f"worker-pre-{round_index}.log", queues="preannotate,clusters"),
        start_worker(env, state / f"worker-{round_index}.log"),
    ]
    port = free_port()
    processes.append(start_backend(port, env, state / f"backend-{round_index}.log"))
    phases: list[Phase] = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 600, processes[-1], state / f"backend-{round_index}.log")
        sampler.roles = {"worker": [p.pid for p in processes[:2]], "backend": [processes[2].pid]}
        print(f"\n--- task page size {page_size} ---", flush=True)
        with phase(sampler, "planning", phases) as record:
            plan = finished_job(queue, queue.enqueue_preannotation(project, "missing", "benchmark")[0])
            record.note = f"{plan['result']['total']} tasks to pre-annotate in {plan['result']['chunks']} chunks"
        with phase(sampler, "pre-annotating 5%", phases) as record:
            run = finished_job(queue, plan["result"]["run"])
            record.note = f"{run['result']['predicted']} predicted, {run['result'].get('encoded')} encoded"
        with phase(sampler, "selection", phases) as record:
            command = [sys.executable, "-m", "lensguard.cli", "select", "--project", str(project), "--budget", "500"]
            process = subprocess.Popen(
                command, env={**os.environ, **env}, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            sampler.roles["select"] = [process.pid]
            out, _ = process.communicate()
            if process.returncode:
                raise SystemExit(f"lensguard select failed ({process.returncode})")
            selection = json.loads(out[out.index(b'{\n  "strategy"') :])
            record.note = f"{len(selection['selected'])} selected, {selection['updated']} tasks updated"
        sampler.roles.pop("select")
        before = {j["id"] for j in queue.jobs(50) if j["id"].startswith(f"run-{project}-rescore-")}
        with phase(sampler, "probe training", phases) as record:
            trained = finished_job(queue, queue.enqueue_training(project, "probe", "benchmark")[0])
            status = (trained.get("result") or {}).get("status")
            record.note = f"{status}"
        with phase(sampler, "re-scoring", phases) as record:
            if status == "promoted":
                trigger = "after the probe's promotion"
            else:  # a tie within noise does not promote: a prompt-set promotion re-scores the same way
                prompts = json.loads((REPO_ROOT / "models" / "prompt_sets" / "soiling-v1.json").read_text())
                prompts["name"] = f"benchmark-wording-{round_index}"
                (state / "prompts.json").write_text(json.dumps(prompts))
                use_prompt_set(project, state / "prompts.json", stack["settings"])
                trigger = "after a prompt-set promotion (the probe was not promoted)"
            rescored = newest_rescore_run(queue, project, before)["result"]
            done = int(rescored["predicted"])
            worker_s = int(rescored.get("total_ms", 0)) / 1000
            write_s, read_s = int(rescored.get("write_ms", 0)) / 1000, int(rescored.get("read_ms", 0)) / 1000
            without_writes = done / max(worker_s - write_s, 1e-9)
            record.note = (
                f"{done} tasks {trigger}; {rescored['encoded']} encoded; chunk time {worker_s:.1f} worker-s, of "
                f"which Label Studio writes {write_s:.1f} s and reads {read_s:.1f} s: "
                f"{without_writes:.0f} tasks/s without Label Studio's writes"
            )
            print(f"{'':<20} model_version switched to {client.project(project)['model_version']}", flush=True)
    finally:
        for process in processes:
            stop(process)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--labelled", type=int, default=None, help="default: 2,000 or a quarter of the tasks")
    parser.add_argument("--page-sizes", default="500", help="task page sizes, one round each: 100,500")
    parser.add_argument("--base-frames", type=int, default=32)
    parser.add_argument("--model", default="lensguard-tiny-ViT")
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="a server URL; a database of its own is made")
    parser.add_argument("--json", type=Path, help="also write the phases here")
    args = parser.parse_args()
    args.labelled = args.labelled if args.labelled is not None else min(2000, args.tasks // 4)
    page_sizes = [int(size) for size in args.page_sizes.split(",")]
    args.redis = benchmark_redis(args.redis)
    images = make_frames(args.base_frames, 1280, 720, dirty_fraction=0.5, seed=7)
    frames = Frames([f.jpeg(85) for f in images], [f.is_dirty for f in images])
    host, server = numbered_image_server(frames.data)
    server_db = PostgresDatabase.from_url(args.postgres)
    database = PostgresDatabase(**{**vars(server_db), "name": f"lensguard_large_{secrets.token_hex(4)}"})
    database.create()
    sampler = Sampler()
    results: dict[int, list[Phase]] = {}
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        port = free_port()
        login = LabelStudioLogin(
            f"http://127.0.0.1:{port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
        )
        ls = start_label_studio(port, state / "ls", login, state / "ls.log", database.label_studio_env())
        try:
            wait_healthy(login.url, 300, ls, state / "ls.log")
            pat = personal_access_token(login.url, login.token, state / "pat")
            env = {
                **random_clip_env(login.url, pat, args.model, state / "lensguard", args.redis, host),
                "LENSGUARD_PREANNOTATE_ON_IMPORT": "false",
                "LENSGUARD_TRAIN_MIN_NEW_ANNOTATIONS": "1000000000",
                "LENSGUARD_TRAIN_RETRIES": "0",
                "LENSGUARD_API_TOKEN": secrets.token_urlsafe(24),
            }
            settings = settings_of(env)
            service = build_serving(settings).service
            base_vectors = np.stack(service.pipeline.embed(frames.base))
            version = service.model_version(None)
            encoder = service.pipeline.scorer.encoder_identity
            client = LabelStudioClient(login.url, pat)
            project = client.sdk.projects.create(title="large project benchmark", label_config=CONFIG).id
            started = time.perf_counter()
            fill_project(client, project, args, frames, host, version)
            fill_cache(settings.embedding_cache_path, args, frames, host, base_vectors, encoder)
            client.update_project(project, model_version=version)
            print(
                f"{args.tasks} tasks imported ({args.labelled} labelled, 95% predicted and cached) "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            stack = {
                "client": client,
                "queue": JobQueue(args.redis, retries=0),
                "sampler": sampler,
                "state": state,
                "project": project,
                "env": env,
                "settings": settings,
            }
            for index, size in enumerate(page_sizes):
                if index:
                    forget_missing(client, project, settings.embedding_cache_path, args, frames, host)
                results[size] = run_round(stack, args, size, index)
        finally:
            sampler.close()
            stop(ls)
            server.shutdown()
            database.drop()
    print(f"\n{args.tasks} tasks ({args.labelled} labelled), {args.model}, Label Studio on PostgreSQL, 2-core CPU")
    for size, phases in results.items():
        print(f"task page size {size}:")
        for record in phases:
            print("  " + record.line())
    if args.json:
        rows = {size: [vars(p) for p in phases] for size, phases in results.items()}
        args.json.write_text(json.dumps({"tasks": args.tasks, "rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
