"""Seconds from a promotion to "the project's model_version switched" in Label Studio, with cached embeddings.

N tasks are imported as JSON whose image URLs point at a local image server (allowed through
LENSGUARD_ALLOWED_IMAGE_HOSTS); a first pre-annotation run fills the embedding cache and writes zero-shot
predictions; then a promotion (a new prompt set, `use_prompt_set`, as `lensguard prompts use` does) queues the
re-scoring run. Measured: promotion -> model_version switched (every unlabelled task holds the new version's
prediction), per 1,000 tasks, frames encoded again (target 0), and the time Label Studio takes afterwards to
store the cluster ids one prediction at a time (its bulk import drops them). Target: under 60 s for 10k tasks.

    .venv/bin/python -m benchmarks.rescore_after_promotion --tasks 10000
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from pathlib import Path

from benchmarks._common import benchmark_redis, distinct_frame, numbered_image_server, random_clip_env, settings_of
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
from training.prompt_job import use_prompt_set
from training.queue import JobQueue
from training.synthetic import make_frames

CONFIG = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()


def wait_run(queue: JobQueue, plan_id: str) -> dict:
    while (plan := queue.job(plan_id))["status"] not in ("finished", "failed"):
        time.sleep(0.5)
    assert plan["status"] == "finished", plan
    run_id = plan["result"]["run"]
    while (run := queue.job(run_id))["status"] != "finished":
        time.sleep(0.5)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--model", default="lensguard-tiny-ViT", help="the re-scoring never runs its image tower")
    parser.add_argument("--redis", help="a Redis database it may flush (default: a private redis-server)")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--wait-clusters", action="store_true", help="also time storing the cluster ids")
    args = parser.parse_args()
    args.redis = benchmark_redis(args.redis)
    frames = [f.jpeg() for f in make_frames(64, 320, 180, dirty_fraction=0.3, seed=5)]
    host, server = numbered_image_server(lambda index: distinct_frame(frames, index))
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        port = free_port()
        login = LabelStudioLogin(
            f"http://127.0.0.1:{port}", "bench@lensguard.local", secrets.token_hex(8), secrets.token_hex(20)
        )
        ls = start_label_studio(port, state / "ls", login, state / "ls.log")
        workers = []
        try:
            wait_healthy(login.url, 300, ls, state / "ls.log")
            pat = personal_access_token(login.url, login.token, state / "pat")
            env = {
                **random_clip_env(login.url, pat, args.model, state / "lensguard", args.redis, host),
                "LENSGUARD_PREANNOTATE_CHUNK_SIZE": str(args.chunk_size),
            }
            settings = settings_of(env)
            client = LabelStudioClient(login.url, pat)
            project = client.sdk.projects.create(title="rescore benchmark", label_config=CONFIG).id
            rows = [{"image": f"http://{host}/{i}.jpg"} for i in range(args.tasks)]
            for start in range(0, len(rows), 2000):
                client.request("POST", f"/api/projects/{project}/import", json=rows[start : start + 2000])
            print(f"{args.tasks} tasks imported", flush=True)
            # what `lensguard up` runs on two cores
            workers.append(start_worker(env, state / "worker-preannotate.log", queues="preannotate,clusters"))
            workers.append(start_worker(env, state / "worker.log"))
            queue = JobQueue(args.redis, retries=1)
            started = time.perf_counter()
            first = wait_run(queue, queue.enqueue_preannotation(project, "missing", "benchmark")[0])
            print(f"first run (encodes every frame): {time.perf_counter() - started:.1f} s, {first['result']}")
            client.update_project(project, model_version=first["result"]["version"])
            prompts = json.loads((REPO_ROOT / "models" / "prompt_sets" / "soiling-v1.json").read_text())
            prompts["name"] = "benchmark-wording"
            (state / "prompts.json").write_text(json.dumps(prompts))

            promoted = time.perf_counter()
            version = use_prompt_set(project, state / "prompts.json", settings)
            while True:
                runs = [j for j in queue.jobs(20) if j["id"].startswith(f"run-{project}-rescore-")]
                if runs and runs[0]["status"] == "finished":
                    break
                time.sleep(0.2)
            current = client.project(project)["model_version"]
            switched = time.perf_counter() - promoted
            result = runs[0]["result"]
            while args.wait_clusters and (result := queue.job(runs[0]["id"])["result"])["clustered"] != result.get(
                "to_cluster"
            ):
                time.sleep(0.5)
            clustered = time.perf_counter() - promoted if args.wait_clusters else None
            print(f"switched to {current} ({version.name}) after {switched:.1f} s", flush=True)
            assert "benchmark-wording" in current, current
            counts: dict[int, int] = {}
            for prediction in client.predictions(project):
                if prediction["model_version"] == current:
                    counts[prediction["task"]] = counts.get(prediction["task"], 0) + 1
            assert len(counts) == args.tasks and set(counts.values()) == {1}, "each task exactly once"
        finally:
            for worker in workers:
                stop(worker)
            stop(ls)
            server.shutdown()
    print(f"\n{args.tasks} tasks, cached embeddings, {args.model}, 2 workers (preannotate + both), 2-core CPU")
    print(f"promotion -> model_version switched: {switched:.1f} s ({switched / args.tasks * 1000:.1f} s per 1,000)")
    print(f"frames encoded again: {result['encoded']}; target: under 60 s for 10,000 tasks")
    if clustered is not None:
        print(f"cluster ids stored (one request per prediction) by: {clustered:.1f} s after the promotion")


if __name__ == "__main__":
    main()
