"""`lensguard init` against a real Label Studio whose admin Label Studio created itself, as docker compose runs it:
the token file appears (mode 600) and works, a rerun keeps it, a lost file is replaced and the old token
revoked, and a wrong password fails with one line."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys

import httpx
import pytest

from labelstudio.tokens import LabelStudioAuth, LabelStudioAuthError
from lensguard.launcher import REPO_ROOT, LabelStudioLogin, free_port, start_label_studio, stop, wait_healthy
from settings import Settings


@pytest.fixture(scope="module")
def compose_like_label_studio(tmp_path_factory):
    """Its own Label Studio: `init` replaces the admin's one personal access token, which other tests use."""
    root = tmp_path_factory.mktemp("init-label-studio")
    port = free_port()
    login = LabelStudioLogin(f"http://127.0.0.1:{port}", "admin@init.test", "pw-" + secrets.token_hex(8), "")
    log = root / "label-studio.log"
    process = start_label_studio(port, root / "data", login, log, {"LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"})
    try:
        wait_healthy(login.url, 300, process, log)
        yield login
    finally:
        stop(process)


def init(login: LabelStudioLogin, token_file, password: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LENSGUARD_LABEL_STUDIO_URL": login.url,
        "LABEL_STUDIO_USERNAME": login.username,
        "LABEL_STUDIO_PASSWORD": password or login.password,
    }
    return subprocess.run(
        [sys.executable, "-m", "lensguard.cli", "init", "--token-file", str(token_file), "--wait", "30"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def reads_projects(url: str, token: str) -> bool:
    try:
        header = LabelStudioAuth(url, token).header()
    except LabelStudioAuthError:
        return False
    return httpx.get(f"{url}/api/projects", headers=header, timeout=30).status_code == 200


def test_init_hands_a_working_token_over_in_a_file_and_is_idempotent(compose_like_label_studio, tmp_path, monkeypatch):
    login = compose_like_label_studio
    token_file = tmp_path / "secrets" / "label-studio-token"

    first = init(login, token_file)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()
    assert token not in first.stdout + first.stderr, "the token is never printed"
    assert reads_projects(login.url, token)
    with monkeypatch.context() as env:
        env.setenv("LENSGUARD_LABEL_STUDIO_API_KEY_FILE", str(token_file))
        assert Settings(_env_file=None).label_studio_api_key.get_secret_value() == token, "what the backend reads"

    again = init(login, token_file)
    assert again.returncode == 0 and "kept" in again.stdout
    assert token_file.read_text() == token

    token_file.unlink()
    replaced = init(login, token_file)
    assert replaced.returncode == 0 and "created" in replaced.stdout, replaced.stderr
    assert token_file.read_text() != token
    assert reads_projects(login.url, token_file.read_text())
    assert not reads_projects(login.url, token), "the lost token was revoked"

    wrong = init(login, tmp_path / "other-token", password="not-the-password")
    assert wrong.returncode != 0
    assert wrong.stderr.strip().splitlines()[-1].startswith("lensguard init: ") and "Traceback" not in wrong.stderr
    assert not (tmp_path / "other-token").exists()
