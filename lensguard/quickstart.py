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
    start_backend,
    start_label_studio,
    start_worker,
    stop,
    wait_healthy,
)
from training.synthetic import make_frames

log = logging.getLogger(__name__)
NORNICKEL_DEV = REPO_ROOT.parent / "shared" / "data" / "nornickel-dev"


@dataclass
class QuickstartOptions:
    state_dir: Path = Path(".lensguard")
    label_studio_port: int = 8080
    backend_port: int = 9090
    project_title: str = "lensguard demo"
    username: str = "admin@lensguard.local"
    frames_dir: Path | None = None
    synthetic_frames: int = 24
    allow_random_weights: bool = True


def _secret(path: Path, make) -> str:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


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


def run(options: QuickstartOptions) -> None:
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    login = LabelStudioLogin(
        url=f"http://localhost:{options.label_studio_port}",
        username=options.username,
        password=_secret(state / "label-studio-password", lambda: secrets.token_urlsafe(12)),
        token=_secret(state / "label-studio-token", lambda: secrets.token_hex(20)),
    )
    processes = []
    try:
        print(f"Starting Label Studio on {login.url} (first start migrates its database, about 30 s)...", flush=True)
        ls_log = state / "label-studio.log"
        processes.append(start_label_studio(options.label_studio_port, state / "label-studio", login, ls_log))
        wait_healthy(login.url, 300, processes[-1], ls_log)
        pat = personal_access_token(login.url, login.token, state / "label-studio-pat")

        backend_url = f"http://localhost:{options.backend_port}"
        print(f"Starting the lensguard backend on {backend_url}...", flush=True)
        env = {
            "LENSGUARD_LABEL_STUDIO_URL": login.url,
            "LENSGUARD_LABEL_STUDIO_API_KEY": pat,
            "LENSGUARD_DATA_DIR": str(state),
            "LENSGUARD_ALLOW_RANDOM_WEIGHTS": str(options.allow_random_weights).lower(),
        }
        backend_log = state / "backend.log"
        processes.append(start_backend(options.backend_port, env, backend_log, host="0.0.0.0"))
        wait_healthy(backend_url, 600, processes[-1], backend_log)
        health = httpx.get(f"{backend_url}/health").json()
        processes.append(start_worker(worker_env(env, health), state / "worker.log"))
        for warning in health.get("warnings", []):
            print(f"WARNING: {warning}", flush=True)

        client = LabelStudioClient(login.url, pat)
        config = (REPO_ROOT / "labeling_config" / "soiling.xml").read_text()
        project, created = client.ensure_project(options.project_title, config)
        client.ensure_ml_backend(project["id"], backend_url)
        if created or not client.tasks(project["id"]):
            frames = sample_frames(options)
            print(f"Importing {len(frames)} frames from {frames[0].parent}...", flush=True)
            client.upload_images(project["id"], frames)
        print("Pre-annotating frames...", flush=True)
        client.retrieve_predictions(project["id"])
        # Uncertainty sampling serves the lowest `score` (most uncertain) frames first, among predictions of
        # the project's model_version.
        client.update_project(project["id"], model_version=health["model_version"], sampling="Uncertainty sampling")
        print(
            "\nlensguard is up.\n"
            f"  Label Studio: {login.url}/projects/{project['id']}/data\n"
            f"  Login:        {login.username}\n"
            f"  Password:     stored in {state / 'label-studio-password'}\n"
            f"  ML backend:   {backend_url} ({health['model_version']})\n"
            f"  Training:     a worker retrains on new annotations; `lensguard jobs` lists the jobs\n"
            f"  Logs:         {state}/{{label-studio,backend,worker}}.log\n"
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
