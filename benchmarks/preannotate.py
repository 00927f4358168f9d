"""End-to-end batch pre-annotation: frames/s from Label Studio to stored predictions, with 1 and 2 workers,
next to the bare model on the same frames, and the peak memory of a worker.

Real Label Studio, Redis and `lensguard worker` processes; each worker count gets its own fresh project and
embedding cache (no cache hits); a small warm-up run loads the model in every worker first.

    .venv/bin/python benchmarks/preannotate.py [--frames 1000] [--workers 1,2] [--model ViT-B-16]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import benchmark_redis, random_clip_env, timed
from labelstudio.client import LabelStudioClient
from lensguard.launcher import (
    REPO_ROOT,
    LabelStudioLogin,
    free_port,
    personal_access_token,
    start_label_studio,
    start_worker,
    stop,
    wait_healthy,
)
from models.frames import decode_image
from models.zero_shot import ZeroShotConfig, create_zero_shot_scorer
from training.queue import JobQueue
from training.synthetic import make_frames

CONFIG = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(queue: JobQueue, client: LabelStudioClient, project: int) -> float:
    job_id, _ = queue.enqueue_preannotation(project, "missing", reason="benchmark")
    start = time.perf_counter()
    while (plan := queue.job(job_id))["status"] not in ("finished", "failed"):
        time.sleep(0.2)
    if plan["status"] != "finished":
        raise SystemExit(f"planning failed: {plan['error']}")
    run_id = plan["result"]["run"]
    while queue.job(run_id)["status"] != "finished":
        time.sleep(0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    args = parser.parse_args()
    print(f"making {args.frames} distinct 1280x720 frames...", flush=True)
    frames = make_frames(args.frames, 1280, 720, dirty_fraction=0.3, seed=123)
    redis_url = benchmark_redis(args.redis)
    rows = []
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        paths = []
        for i, frame in enumerate(frames):
            paths.append(state / f"frame_{i:05d}.jpg")
            paths[-1].write_bytes(frame.jpeg())
        warmup = paths[:8]

        scorer = create_zero_shot_scorer(ZeroShotConfig(model_name=args.model, pretrained=None, device="cpu"))
        pixels = [decode_image(p.read_bytes(), scorer.clip.image_size, 10**9) for p in paths]
        scorer.encode_images(pixels[:32])
        bare = len(pixels) / timed(lambda: scorer.encode_images(pixels))

        port = free_port()
        login = LabelStudioLogin(
            f"http://127.0.0.1:{port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
        )
        ls = start_label_studio(port, state / "ls", login, state / "ls.log")
        try:
            wait_healthy(login.url, 300, ls, state / "ls.log")
            pat = personal_access_token(login.url, login.token, state / "pat")
            client = LabelStudioClient(login.url, pat)
            queue = JobQueue(redis_url, retries=1)
            for count in [int(w) for w in args.workers.split(",")]:
                env = {
                    **random_clip_env(login.url, pat, args.model, state / f"lensguard-{count}", redis_url),
                }
                workers = [start_worker(env, state / f"worker-{count}-{i}.log") for i in range(count)]
                try:
                    warm = client.sdk.projects.create(title=f"warm-up {count}", label_config=CONFIG).id
                    client.upload_images(warm, warmup * count)
                    run(queue, client, warm)
                    project = client.sdk.projects.create(title=f"benchmark {count}", label_config=CONFIG).id
                    print(f"uploading {len(paths)} frames for {count} worker(s)...", flush=True)
                    client.upload_images(project, paths)
                    seconds = run(queue, client, project)
                    stored = {p["task"] for p in client.predictions(project)}
                    assert len(stored) == len(paths), f"{len(stored)} of {len(paths)} tasks predicted"
                    peak = max(peak_rss_mib(w.pid) for w in workers)
                    rows.append((count, len(paths) / seconds, peak))
                finally:
                    for worker in workers:
                        stop(worker)
        finally:
            stop(ls)
    print(f"\n{args.frames} frames 1280x720, {args.model} (random weights), CPU; bare model {bare:.2f} frames/s")
    print(f"{'workers':>7} {'end-to-end fr/s':>16} {'vs bare':>8} {'peak worker RSS':>16}")
    for count, rate, peak in rows:
        print(f"{count:>7} {rate:>16.2f} {rate / bare:>8.0%} {peak:>12.0f} MiB")
    print("target: one worker at least 70% of the bare model")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
