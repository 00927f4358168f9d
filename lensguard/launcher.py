"""Start and stop local Label Studio and lensguard processes (the `up` command and the end-to-end tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from labelstudio.server_flags import RECOMMENDED_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent

# Label Studio refuses ML-backend and webhook URLs on loopback/private networks unless told otherwise; a local
# backend (or a docker-compose service name) needs both switches.
LOCAL_BACKEND_ENV = {"ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false"}


class LaunchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def label_studio_binary() -> Path:
    candidates = [os.environ.get("LENSGUARD_LABEL_STUDIO_BIN"), REPO_ROOT / ".venv-ls" / "bin" / "label-studio"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("label-studio")
    if found:
        return Path(found)
    raise LaunchError(
        "label-studio is not installed: run scripts/bootstrap.sh (it installs Label Studio into .venv-ls) "
        "or set LENSGUARD_LABEL_STUDIO_BIN"
    )


def wait_healthy(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise LaunchError(f"{url} process exited with code {process.returncode}\n{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise LaunchError(f"{url}/health not healthy after {timeout:.0f}s" + (f" (log: {log})" if log else ""))


@dataclass
class LabelStudioLogin:
    url: str
    username: str
    password: str
    token: str  # legacy token of the first user


def start_label_studio(
    port: int, data_dir: Path, login: LabelStudioLogin, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **LOCAL_BACKEND_ENV,
        **RECOMMENDED_ENV,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        **(extra_env or {}),
    }
    for stray in ("USERNAME", "PASSWORD", "USER_TOKEN", "HEARTEX_USERNAME", "HEARTEX_PASSWORD", "HEARTEX_USER_TOKEN"):
        env.pop(stray, None)
    # Label Studio reads the first user from LABEL_STUDIO_USERNAME/PASSWORD/USER_TOKEN (server.py, get_env):
    # through the environment, no secret shows in `ps`.
    env |= {
        "LABEL_STUDIO_USERNAME": login.username,
        "LABEL_STUDIO_PASSWORD": login.password,
        "LABEL_STUDIO_USER_TOKEN": login.token,
    }
    command = [str(label_studio_binary()), "start", "--no-browser", "--port", str(port), "--enable-legacy-api-token"]
    log_file = log_path.open("ab")
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def start_backend(port: int, env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", host, "--port", str(port)]
    log_file = log_path.open("ab")
    return subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        start_new_session=True,
    )


def start_worker(
    env: dict[str, str], log_path: Path, name: str | None = None, queues: str | None = None
) -> subprocess.Popen:
    """A `lensguard worker` process in its own session; `queues` like "preannotate" (default: all, uploads first)."""
    command = [
        sys.executable,
        "-m",
        "lensguard.cli",
        "worker",
        "--name",
        name or f"worker-{os.getpid()}-{time.time_ns()}",
        *(["--queues", queues] if queues else []),
    ]
    return subprocess.Popen(
        command,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def write_secret(path: Path, text: str) -> None:
    """Create `path` readable by its owner only from the first byte (no window with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def read_or_create_secret(path: Path, make) -> str:
    """The secret kept in `path`, made with `make()` and stored (mode 600) on first use."""
    if not path.is_file() or not path.read_text().strip():
        path.unlink(missing_ok=True)
        write_secret(path, make())
    path.chmod(0o600)  # a file left by an older version may be wider
    return path.read_text().strip()


def personal_access_token(url: str, legacy_token: str, store: Path) -> str:
    """A personal access token (Label Studio's current token flow), created once and kept in `store`."""
    if store.is_file() and store.read_text().strip():
        return store.read_text().strip()
    response = httpx.post(f"{url}/api/token/", headers={"Authorization": f"Token {legacy_token}"}, timeout=30)
    if response.status_code == 409:
        raise LaunchError(f"a personal access token exists already but {store} is missing: revoke it in Label Studio")
    if response.status_code >= 400:
        raise LaunchError(f"could not create a personal access token: HTTP {response.status_code}")
    token = response.json()["token"]
    store.unlink(missing_ok=True)
    write_secret(store, token)
    return token
