"""The `lensguard` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
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
            backend_host=args.host,
            project_title=args.project,
            frames_dir=args.frames,
            allow_random_weights=not args.strict_weights,
            postgres_url=args.postgres,
        )
    )


def _worker(args: argparse.Namespace) -> None:
    from rq import Worker

    from lensguard.worker import MAINTENANCE_INTERVAL, WORKER_TTL, HeartbeatWorker
    from settings import get_settings, open_model_registry
    from training.queue import QUEUE_NAMES, JobSerializer, connect, job_queue

    settings = get_settings()
    removed = open_model_registry(settings).clean_staging()
    if removed:
        logging.info("removed %d half-written model versions left by killed workers", removed)
    connection = connect(settings.redis_url)
    # By default jobs run in the worker process, so models load once per worker rather than once per job.
    worker_class = Worker if args.fork else HeartbeatWorker
    names = [name.strip() for name in args.queues.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUE_NAMES))
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        raise SystemExit(f"--queues: unknown queue(s) {given}; known: {', '.join(QUEUE_NAMES)}")
    queues = [job_queue(connection, name) for name in names]  # in order of priority
    worker = worker_class(
        queues,
        connection=connection,
        name=args.name,
        serializer=JobSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL,
        worker_ttl=WORKER_TTL,
    )
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


def _secrets(args: argparse.Namespace) -> None:
    """The backend's credentials as files (mode 600) in a folder the backend reads with LENSGUARD_SECRETS_DIR."""
    import secrets

    from lensguard.launcher import read_or_create_secret

    made = {
        "lensguard_api_token": lambda: secrets.token_urlsafe(32),
        "lensguard_basic_auth_user": lambda: "labelstudio",
        "lensguard_basic_auth_pass": lambda: secrets.token_urlsafe(24),
    }
    for name, make in made.items():
        read_or_create_secret(args.directory / name, make)
    print(f"backend credentials in {args.directory} (delete a file and rerun to rotate it)", flush=True)


def _init(args: argparse.Namespace) -> None:
    from labelstudio.admin import AdminLoginError, ensure_token_file
    from settings import get_settings

    settings = get_settings()
    email = os.environ.get("LABEL_STUDIO_USERNAME")
    password = os.environ.get("LABEL_STUDIO_PASSWORD")
    if not password and os.environ.get("LABEL_STUDIO_PASSWORD_FILE"):
        password = Path(os.environ["LABEL_STUDIO_PASSWORD_FILE"]).read_text().strip()
    if not email or not password:
        sys.exit("lensguard init: set LABEL_STUDIO_USERNAME and LABEL_STUDIO_PASSWORD (the Label Studio admin)")
    token_file = args.token_file or settings.data_dir / "label-studio-token"
    try:
        outcome = ensure_token_file(settings.label_studio_url, email, password, token_file, args.wait)
    except AdminLoginError as exc:
        sys.exit(f"lensguard init: {exc}")
    print(f"lensguard init: {outcome} the personal access token of {email} in {token_file}")


def _health(args: argparse.Namespace) -> None:
    from lensguard.health import backend_health, worker_health
    from settings import get_settings

    settings = get_settings()
    healthy, detail = worker_health(settings.redis_url) if args.worker else backend_health(settings.port)
    print(detail)
    sys.exit(0 if healthy else 1)


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
    up.add_argument("--host", default="127.0.0.1", help="backend address (0.0.0.0: reachable from the network)")
    up.add_argument("--project", default="lensguard demo", help="Label Studio project title")
    up.add_argument("--frames", type=Path, help="folder of frames to import (default: real dev set or synthetic)")
    up.add_argument(
        "--strict-weights", action="store_true", help="fail instead of serving random weights when none load"
    )
    up.add_argument(
        "--postgres",
        metavar="URL",
        help="run Label Studio on PostgreSQL (postgresql://user:password@host:5432/name; the database is created "
        "if missing) instead of its embedded SQLite",
    )
    up.set_defaults(func=_up)

    worker = commands.add_parser("worker", help="run a training worker on the job queue (REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--name")
    worker.add_argument("--fork", action="store_true", help="run each job in a forked work horse (reloads models)")
    worker.add_argument(
        "--queues",
        default="preannotate,train,clusters,vlm",
        help="queues to take jobs from, first has priority (preannotate: uploads and re-scoring; train: training; "
        "clusters: storing cluster ids after a run; vlm: generative-VLM jobs for uncertain frames)",
    )
    worker.set_defaults(func=_worker)

    init = commands.add_parser(
        "init", help="create the personal access token of the Label Studio admin (LABEL_STUDIO_USERNAME/_PASSWORD)"
    )
    init.add_argument("--token-file", type=Path, help="where to write it, mode 600 (default: <data dir>/...)")
    init.add_argument("--wait", type=float, default=300, help="seconds to wait for Label Studio to be up")
    init.set_defaults(func=_init)

    health = commands.add_parser("health", help="exit 0 when the backend here answers /health (container check)")
    health.add_argument("--worker", action="store_true", help="check this host's worker is registered in Redis")
    health.set_defaults(func=_health)

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

    secret_files = commands.add_parser("secrets", help="create the backend's credentials as files (mode 600)")
    secret_files.add_argument("directory", type=Path)
    secret_files.set_defaults(func=_secrets)

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

    vlm = commands.add_parser("vlm", help="the generative VLM that explains and settles uncertain frames")
    vlm_commands = vlm.add_subparsers(dest="vlm_command", required=True)
    vlm_eval = vlm_commands.add_parser("eval", help="VLM vs zero-shot CLIP and the active classifier, HTML report")
    vlm_eval.add_argument("--project", type=int, required=True)
    vlm_eval.add_argument("--limit", type=int, default=None, help="evaluate at most this many frames of the split")
    vlm_eval.set_defaults(func=_vlm_eval)
    return parser


def _vlm_eval(args: argparse.Namespace) -> None:
    from settings import get_settings
    from training.progress import JobProgress
    from training.vlm_eval import run_vlm_eval

    result = run_vlm_eval(args.project, get_settings(), JobProgress(echo=_echo), args.limit)
    print(json.dumps(result, indent=2))
    if result["status"] != "done":
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    from settings.logs import configure_logging

    configure_logging(os.environ.get("LENSGUARD_LOG_FORMAT", "text"))
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
