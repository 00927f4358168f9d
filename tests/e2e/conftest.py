"""Real services for end-to-end tests: Label Studio in its own venv and the lensguard backend as a process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from labelstudio.client import LabelStudioClient
from lensguard.launcher import (
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
from tests.services import redis_url

LABEL_STUDIO_START_TIMEOUT = 300
# Label Studio runs on PostgreSQL, as in production: a database of its own per test session (scripts/services.sh
# starts a local server when none answers).
POSTGRES_URL = os.environ.get("LENSGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def label_studio_database() -> Iterator[PostgresDatabase]:
    server = PostgresDatabase.from_url(POSTGRES_URL)
    database = PostgresDatabase(**{**vars(server), "name": f"lensguard_e2e_{os.getpid()}_{secrets.token_hex(4)}"})
    database.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, label_studio_database) -> Iterator[LabelStudioLogin]:
    root = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    login = LabelStudioLogin(
        url=f"http://127.0.0.1:{port}",
        username="e2e@lensguard.test",
        password="e2e-" + secrets.token_hex(8),
        token=secrets.token_hex(20),
    )
    log = root / "label-studio.log"
    process = start_label_studio(port, root / "data", login, log, label_studio_database.label_studio_env())
    try:
        wait_healthy(login.url, LABEL_STUDIO_START_TIMEOUT, process, log)
        yield login
    finally:
        stop(process)


@pytest.fixture(scope="session")
def ls_pat(label_studio, tmp_path_factory) -> str:
    """The one personal access token of the test user (Label Studio allows one at a time)."""
    return personal_access_token(label_studio.url, label_studio.token, tmp_path_factory.mktemp("pat") / "pat")


@pytest.fixture(scope="session")
def ls_client(label_studio) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token)


@dataclass
class RunningBackend:
    url: str
    basic_auth: tuple[str, str]
    log: Path
    data_dir: Path
    token: str
    env: dict[str, str]


@contextmanager
def launch_backend(label_studio: LabelStudioLogin, pat: str, root: Path, **settings: str) -> Iterator[RunningBackend]:
    """The real backend process on a tiny random CLIP, reading images with a personal access token."""
    port = free_port()
    auth = ("labelstudio", secrets.token_hex(8))
    env = {
        "LENSGUARD_LABEL_STUDIO_URL": label_studio.url,
        "LENSGUARD_LABEL_STUDIO_API_KEY": pat,
        "LENSGUARD_CLIP_MODEL": "lensguard-tiny-ViT",
        "LENSGUARD_CLIP_PRETRAINED": "none",
        "LENSGUARD_ALLOW_RANDOM_WEIGHTS": "true",
        "LENSGUARD_DEVICE": "cpu",
        "LENSGUARD_DATA_DIR": str(root / "data"),
        "LENSGUARD_BASIC_AUTH_USER": auth[0],
        "LENSGUARD_BASIC_AUTH_PASS": auth[1],
        "LENSGUARD_REDIS_URL": redis_url(0),
        "LENSGUARD_RUNTIME": "torch",  # the measured choice (auto) is tested in tests/unit/test_runtimes.py
        **{f"LENSGUARD_{key.upper()}": value for key, value in settings.items()},
    }
    log = root / "backend.log"
    process = start_backend(port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 120, process, log)
        yield RunningBackend(url=url, basic_auth=auth, log=log, data_dir=root / "data", token=pat, env=env)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def backend(label_studio, ls_pat, tmp_path_factory) -> Iterator[RunningBackend]:
    with launch_backend(label_studio, ls_pat, tmp_path_factory.mktemp("backend")) as running:
        yield running


@dataclass
class RunningStack:
    backend: RunningBackend
    root: Path
    workers: dict  # name -> its process (`{name}.log`); a test may replace one, the stack stops what is there


@contextmanager
def launch_stack(
    label_studio: LabelStudioLogin,
    pat: str,
    root: Path,
    redis_db_url: str,
    workers: dict[str, str | None] | None = None,
    worker_env: dict[str, str] | None = None,
    **settings: str,
) -> Iterator[RunningStack]:
    """A flushed Redis database, the backend and its workers (name -> queues, None for all; one by default)."""
    redis.Redis.from_url(redis_db_url).flushdb()
    with launch_backend(label_studio, pat, root, redis_url=redis_db_url, **settings) as backend:
        env = {**backend.env, **(worker_env or {})}
        running = RunningStack(backend, root, {})
        try:
            for name, queues in (workers or {"worker": None}).items():
                running.workers[name] = start_worker(env, root / f"{name}.log", queues=queues)
            yield running
        finally:
            for process in running.workers.values():
                stop(process)
