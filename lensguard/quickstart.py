"""`lensguard up`: Label Studio plus the backend on embedded defaults, with a demo project ready to label."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from labelstudio.client import LabelStudioClient
from lensguard.launcher import (
    REPO_ROOT,
    LabelStudioLogin,
    personal_access_token,
    read_or_create_secret,
    start_backend,
    start_label_studio,
    start_worker,
    stop,
    wait_healthy,
)
from lensguard.postgres import PostgresDatabase
from settings import Settings
from training.queue import JobQueue
from training.synthetic import make_frames

log = logging.getLogger(__name__)
NORNICKEL_DEV = REPO_ROOT.parent / "shared" / "data" / "nornickel-dev"


@dataclass
class QuickstartOptions:
    state_dir: Path = Path(".lensguard")
    label_studio_port: int = 8080
    backend_port: int = 9090
    backend_host: str = "127.0.0.1"  # the backend's address; 0.0.0.0 exposes it (with auth) to the network
    project_title: str = "lensguard demo"
    username: str = "admin@lensguard.local"
    frames_dir: Path | None = None
    synthetic_frames: int = 24
    allow_random_weights: bool = True
    postgres_url: str | None = None  # Label Studio's database; None: SQLite in the state directory


def sample_frames(options: QuickstartOptions) -> list[Path]:
    """The frames to import: a given folder, else the real dev set when present, else synthetic soiling."""
    for folder in (options.frames_dir, NORNICKEL_DEV / "images"):
        if folder and folder.is_dir():
            frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if frames:
                return frames
    out = options.state_dir / "sample-frames"
    out.mkdir(parents=True, exist_ok=True)
    frames = sorted(out.glob("*.jpg"))
    if not frames:
        for i, frame in enumerate(make_frames(options.synthetic_frames, 1280, 720, seed=2024)):
            (out / f"synthetic_{'dirty' if frame.is_dirty else 'clean'}_{i:03d}.jpg").write_bytes(frame.jpeg())
        frames = sorted(out.glob("*.jpg"))
    return frames


def worker_env(backend_env: dict[str, str], health: dict) -> dict[str, str]:
    """The worker encodes frames with the backend's model; where the backend found no pretrained weights (no
    hub access), the worker goes straight to the same seeded random weights instead of retrying downloads."""
    if health.get("weights") == "random":
        return {**backend_env, "HF_HUB_OFFLINE": "1"}
    return backend_env


def label_studio_database(options: QuickstartOptions) -> PostgresDatabase | None:
    """The PostgreSQL database `--postgres` names, created when missing; None for the embedded SQLite."""
    if not options.postgres_url:
        return None
    database = PostgresDatabase.from_url(options.postgres_url)
    if database.create():
        print(f"Created PostgreSQL database {database.name} on {database.host}:{database.port}", flush=True)
    return database


def describe_database(database: PostgresDatabase | None, state: Path) -> str:
    if database is None:
        return f"SQLite in {state / 'label-studio'}"
    return f"PostgreSQL {database.user}@{database.host}:{database.port}/{database.name}"


def run(options: QuickstartOptions) -> None:
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    login = LabelStudioLogin(
        url=f"http://localhost:{options.label_studio_port}",
        username=options.username,
        password=read_or_create_secret(state / "label-studio-password", lambda: secrets.token_urlsafe(12)),
        token=read_or_create_secret(state / "label-studio-token", lambda: secrets.token_hex(20)),
    )
    # The backend's own credentials: basic auth for Label Studio's ML connection, a bearer token for webhooks
    # and scripts. Delete the files and run `up` again to rotate them.
    backend_auth = ("labelstudio", read_or_create_secret(state / "backend-password", lambda: secrets.token_urlsafe(24)))
    api_token = read_or_create_secret(state / "api-token", lambda: secrets.token_urlsafe(32))
    processes = []
    try:
        database = label_studio_database(options)
        print(f"Starting Label Studio on {login.url} (first start migrates its database, about 30 s)...", flush=True)
        ls_log = state / "label-studio.log"
        ls_env = database.label_studio_env() if database else None
        processes.append(start_label_studio(options.label_studio_port, state / "label-studio", login, ls_log, ls_env))
        wait_healthy(login.url, 300, processes[-1], ls_log)
        pat = personal_access_token(login.url, login.token, state / "label-studio-pat")

        backend_url = f"http://localhost:{options.backend_port}"
        print(f"Starting the lensguard backend on {backend_url}...", flush=True)
        env = {
            "LENSGUARD_LABEL_STUDIO_URL": login.url,
            "LENSGUARD_LABEL_STUDIO_API_KEY": pat,
            "LENSGUARD_DATA_DIR": str(state),
            "LENSGUARD_ALLOW_RANDOM_WEIGHTS": str(options.allow_random_weights).lower(),
            "LENSGUARD_API_TOKEN": api_token,
            "LENSGUARD_BASIC_AUTH_USER": backend_auth[0],
            "LENSGUARD_BASIC_AUTH_PASS": backend_auth[1],
        }
        backend_log = state / "backend.log"
        processes.append(start_backend(options.backend_port, env, backend_log, host=options.backend_host))
        wait_healthy(backend_url, 600, processes[-1], backend_log)
        health = httpx.get(f"{backend_url}/health").json()
        # Two workers for two cores: one never trains (uploads, re-scoring after a promotion, then cluster ids), so
        # frames never wait behind a training job; the other takes pre-annotation first, then training.
        workers = worker_env(env, health)
        processes.append(start_worker(workers, state / "worker-preannotate.log", queues="preannotate,clusters"))
        processes.append(start_worker(workers, state / "worker.log"))
        for warning in health.get("warnings", []):
            print(f"WARNING: {warning}", flush=True)

        client = LabelStudioClient(login.url, pat)
        config = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
        project, created = client.ensure_project(options.project_title, config)
        client.ensure_ml_backend(project["id"], backend_url, basic_auth=backend_auth, api_token=api_token)
        if created or next(client.iter_tasks(project["id"], fields=("id",), page_size=1), None) is None:
            frames = sample_frames(options)
            print(f"Importing {len(frames)} frames from {frames[0].parent}...", flush=True)
            client.upload_images(project["id"], frames)
        print("Pre-annotating frames (a run on the queue; `lensguard jobs` shows it)...", flush=True)
        # One run, not Label Studio's retrieve action as well: the import webhook's run joins this one.
        JobQueue(Settings().redis_url).enqueue_preannotation(project["id"], "missing", reason="up")
        # Uncertainty sampling serves the lowest `score` (most uncertain) frames first, among predictions of
        # the project's model_version.
        client.update_project(project["id"], model_version=health["model_version"], sampling="Uncertainty sampling")
        print(
            "\nlensguard is up.\n"
            f"  Label Studio: {login.url}/projects/{project['id']}/data\n"
            f"  Database:     {describe_database(database, state)}\n"
            f"  Login:        {login.username}\n"
            f"  Password:     stored in {state / 'label-studio-password'}\n"
            f"  ML backend:   {backend_url} ({health['model_version']})\n"
            f"  API token:    stored in {state / 'api-token'} (`Authorization: Bearer ...`)\n"
            f"  Training:     a worker retrains on new annotations; `lensguard jobs` lists the jobs\n"
            f"  Logs:         {state}/{{label-studio,backend,worker,worker-preannotate}}.log\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        _wait_for_stop(processes)
    finally:
        for process in reversed(processes):
            stop(process)


def _wait_for_stop(processes) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"a service exited with code {process.returncode}; see logs in .lensguard/")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    print("Stopping...", flush=True)


if __name__ == "__main__":
    run(QuickstartOptions(state_dir=Path(os.environ.get("LENSGUARD_DATA_DIR", ".lensguard"))))
