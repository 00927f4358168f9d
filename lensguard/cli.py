"""The `lensguard` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from settings import get_settings

    settings = get_settings()
    uvicorn.run("backend.main:app", host=args.host or settings.host, port=args.port or settings.port)


def _up(args: argparse.Namespace) -> None:
    from lensguard.quickstart import QuickstartOptions, run

    run(
        QuickstartOptions(
            state_dir=args.state_dir,
            label_studio_port=args.label_studio_port,
            backend_port=args.port,
            project_title=args.project,
            frames_dir=args.frames,
            allow_random_weights=not args.strict_weights,
        )
    )


def _worker(args: argparse.Namespace) -> None:
    from rq import Queue, Worker

    from lensguard.worker import HeartbeatWorker
    from models.registry import ModelRegistry
    from settings import get_settings
    from training.queue import QUEUE_NAME, connect

    settings = get_settings()
    removed = ModelRegistry(settings.registry_path).clean_staging()
    if removed:
        logging.info("removed %d half-written model versions left by killed workers", removed)
    connection = connect(settings.redis_url)
    # By default jobs run in the worker process, so models load once per worker rather than once per job.
    worker_class = Worker if args.fork else HeartbeatWorker
    worker = worker_class([Queue(QUEUE_NAME, connection=connection)], connection=connection, name=args.name)
    worker.work(with_scheduler=True, burst=args.burst, logging_level="INFO")


def _queue():
    from settings import get_settings
    from training.queue import JobQueue

    settings = get_settings()
    return JobQueue(settings.redis_url, settings.job_timeout_seconds, settings.train_retries)


def _train(args: argparse.Namespace) -> None:
    if args.inline:
        from settings import get_settings
        from training.progress import JobProgress
        from training.train_job import run_training

        result = run_training(args.project, args.kind, get_settings(), JobProgress(echo=_echo), "cli")
        print(json.dumps(result, indent=2))
        return
    job_id, created = _queue().enqueue_training(args.project, args.kind, reason="cli")
    print(f"{'queued' if created else 'joined waiting'} job {job_id}", flush=True)
    if args.follow:
        _follow(job_id)


def _follow(job_id: str) -> None:
    """Show a job's progress until it ends (needs a running worker)."""
    queue = _queue()
    seen = 0
    while True:
        job = queue.job(job_id)
        if job is None:
            raise SystemExit(f"job {job_id} vanished")
        for line in job["log"][seen:]:
            _echo(line)
        seen = len(job["log"])
        progress = job["progress"]
        if progress.get("total"):
            done, total = progress.get("done", 0), progress["total"]
            filled = int(30 * done / total)
            eta = f" eta {progress['eta_s']:.0f}s" if progress.get("eta_s") is not None else ""
            print(
                f"\r  {progress.get('stage', '')}: [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{eta}",
                end="",
                file=sys.stderr,
                flush=True,
            )
        if job["status"] in ("finished", "failed", "stopped", "canceled"):
            print(file=sys.stderr)
            print(json.dumps({k: job[k] for k in ("id", "status", "result", "error")}, indent=2))
            if job["status"] != "finished":
                raise SystemExit(1)
            return
        time.sleep(1)


def _jobs(args: argparse.Namespace) -> None:
    queue = _queue()
    if args.job_id:
        if args.follow:
            _follow(args.job_id)
            return
        job = queue.job(args.job_id)
        if job is None:
            raise SystemExit(f"no job {args.job_id}")
        print(json.dumps(job, indent=2))
        return
    print(f"{'id':<36} {'status':<10} {'project':>7} {'kind':<9} {'progress':<28} result")
    for job in queue.jobs(args.limit):
        progress = job["progress"]
        shown = f"{progress.get('stage', '')[:18]} {progress.get('done', '')}/{progress.get('total') or ''}"
        result = (job["result"] or {}).get("status", "") if isinstance(job["result"], dict) else ""
        print(
            f"{job['id']:<36} {job['status']:<10} {job['project']!s:>7} {job['kind']!s:<9} {shown:<28} "
            f"{result or job['error'] or ''}"
        )


def _prompts_eval(args: argparse.Namespace) -> None:
    from settings import get_settings

    prompt_sets = []
    for path in args.prompts:
        try:
            prompt_sets.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read prompt set {path}: {exc}") from exc
    if args.queue:
        from training.prompt_job import PROMPT_EVAL_FUNCTION

        job_id = _queue().enqueue(
            PROMPT_EVAL_FUNCTION,
            (args.project, prompt_sets, args.models, args.target_recall),
            args.project,
            "prompt-eval",
            "cli",
        )
        print(f"queued job {job_id}", flush=True)
        if args.follow:
            _follow(job_id)
        return
    from training.progress import JobProgress
    from training.prompt_job import run_prompt_eval

    result = run_prompt_eval(
        args.project, prompt_sets, args.models, get_settings(), JobProgress(echo=_echo), args.target_recall
    )
    print(json.dumps(result, indent=2))
    if args.open and "report_html" in result:
        print(result["report_html"])


def _prompts_use(args: argparse.Namespace) -> None:
    from models.zero_shot import PromptSetError
    from settings import get_settings
    from training.prompt_job import use_prompt_set

    try:
        version = use_prompt_set(args.project, Path(args.file), get_settings())
    except PromptSetError as exc:
        raise SystemExit(str(exc)) from exc
    print(f"project {args.project} now serves prompt set {version.config['prompt_set']} ({version.name})")


def _preannotate(args: argparse.Namespace) -> None:
    queue = _queue()
    job_id, created = queue.enqueue_preannotation(args.project, "all" if args.all else "missing", reason="cli")
    print(f"{'queued' if created else 'joined waiting'} planning job {job_id}", flush=True)
    if not args.follow:
        return
    while (plan := queue.job(job_id))["status"] not in ("finished", "failed", "stopped", "canceled"):
        time.sleep(1)
    if plan["status"] != "finished":
        raise SystemExit(f"planning failed: {plan['error']}")
    print(json.dumps(plan["result"]), flush=True)
    if plan["result"]["total"]:
        _follow(plan["result"]["run"])


def _select(args: argparse.Namespace) -> None:
    from settings import get_settings
    from training.progress import JobProgress
    from training.select_job import run_selection

    result = run_selection(
        args.project, args.strategy, args.budget, get_settings(), JobProgress(echo=_echo), args.per_group
    )
    print(json.dumps(result, indent=2))


def _synth(args: argparse.Namespace) -> None:
    from training.synthetic import write_dataset

    width, _, height = args.size.partition("x")
    manifest = write_dataset(args.out, args.count, int(width), int(height), args.dirty_fraction, args.seed, args.style)
    print(f"{args.count} frames with exact masks (0 clear, 1 transparent, 2 semi-transparent, 3 opaque): {manifest}")


def _echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensguard", description="Lens-soiling ML backend for Label Studio")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ML backend HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    up = commands.add_parser("up", help="start Label Studio and the backend with a demo project")
    up.add_argument("--state-dir", type=Path, default=Path(".lensguard"))
    up.add_argument("--label-studio-port", type=int, default=8080)
    up.add_argument("--port", type=int, default=9090, help="backend port")
    up.add_argument("--project", default="lensguard demo", help="Label Studio project title")
    up.add_argument("--frames", type=Path, help="folder of frames to import (default: real dev set or synthetic)")
    up.add_argument(
        "--strict-weights", action="store_true", help="fail instead of serving random weights when none load"
    )
    up.set_defaults(func=_up)

    worker = commands.add_parser("worker", help="run a training worker on the job queue (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--name")
    worker.add_argument("--fork", action="store_true", help="run each job in a forked work horse (reloads models)")
    worker.set_defaults(func=_worker)

    train = commands.add_parser("train", help="train a classifier for a Label Studio project")
    train.add_argument("--project", type=int, required=True)
    train.add_argument("--kind", choices=["probe", "finetune", "segmenter"], default="probe")
    train.add_argument("--inline", action="store_true", help="train in this process instead of on the queue")
    train.add_argument("--follow", action="store_true", help="show the queued job's progress until it ends")
    train.set_defaults(func=_train)

    jobs = commands.add_parser("jobs", help="list training jobs, or show one")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--limit", type=int, default=30)
    jobs.add_argument("--follow", action="store_true")
    jobs.set_defaults(func=_jobs)

    preannotate = commands.add_parser("preannotate", help="pre-annotate a project's tasks in chunks on the queue")
    preannotate.add_argument("--project", type=int, required=True)
    which = preannotate.add_mutually_exclusive_group()
    which.add_argument("--missing", action="store_true", help="tasks without any prediction (default)")
    which.add_argument("--all", action="store_true", help="every task without a prediction of the served version")
    preannotate.add_argument("--follow", action="store_true", help="show a progress bar until the run ends")
    preannotate.set_defaults(func=_preannotate)

    choose = commands.add_parser("select", help="queue the most useful unlabelled frames in a Label Studio tab")
    choose.add_argument("--project", type=int, required=True)
    choose.add_argument(
        "--strategy",
        default="combined",
        choices=["least-confident", "margin", "entropy", "disagreement", "likely-dirty", "diversity", "combined"],
    )
    choose.add_argument("--budget", type=int, default=100)
    choose.add_argument("--per-group", type=int, default=1, help="frames of one sequence/scene at most")
    choose.set_defaults(func=_select)

    synth = commands.add_parser("synth", help="draw synthetic lens soiling over frames, with exact masks")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--count", type=int, default=100)
    synth.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    synth.add_argument("--dirty-fraction", type=float, default=0.5)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--style", choices=["blobs", "realistic"], default="blobs", help="realistic: haze, film, condensation, splashes"
    )
    synth.set_defaults(func=_synth)

    prompts = commands.add_parser("prompts", help="measure prompt sets against labelled frames, and choose one")
    prompt_commands = prompts.add_subparsers(dest="prompts_command", required=True)
    evaluate = prompt_commands.add_parser("eval", help="score prompt sets, single prompts and greedy ensembles")
    evaluate.add_argument("--project", type=int, required=True)
    evaluate.add_argument("--prompts", nargs="*", default=[], help="prompt-set JSON files (default: the served one)")
    evaluate.add_argument(
        "--models", nargs="*", default=[], help="open_clip models, e.g. ViT-B-16:openai ViT-B-16-SigLIP:webli"
    )
    evaluate.add_argument("--target-recall", type=float, help="threshold reaching this recall for dirty")
    evaluate.add_argument("--queue", action="store_true", help="run as a job on the queue")
    evaluate.add_argument("--follow", action="store_true", help="with --queue: show progress until it ends")
    evaluate.add_argument("--open", action="store_true", help="print the HTML report's path at the end")
    evaluate.set_defaults(func=_prompts_eval)
    use = prompt_commands.add_parser("use", help="serve a prompt set (with its threshold) for a project")
    use.add_argument("file")
    use.add_argument("--project", type=int, required=True)
    use.set_defaults(func=_prompts_use)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
