"""Credentials end to end: Label Studio connects with basic auth, its webhook carries the bearer token,
reconnecting updates the credentials, wrong ones are refused, and anonymous callers get 401."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
import redis

from labelstudio.client import LabelStudioError
from tests.e2e.conftest import launch_backend
from tests.services import redis_url
from training.synthetic import make_frames

SOILING_XML = Path(__file__).resolve().parents[2] / "labeling_config" / "soiling.xml"
REDIS_URL = redis_url(7)


def test_label_studio_reaches_the_authenticated_backend_and_its_webhook_carries_the_token(
    label_studio, ls_pat, ls_client, tmp_path
):
    redis.Redis.from_url(REDIS_URL).flushdb()
    token = "e2e-api-" + secrets.token_urlsafe(24)
    settings = dict(
        api_token=token,
        redis_url=REDIS_URL,
        train_min_new_annotations="1",
        train_debounce_seconds="3600",
        preannotate_on_import="false",
    )
    with launch_backend(label_studio, ls_pat, tmp_path, **settings) as backend:
        project = ls_client.sdk.projects.create(title="e2e security", label_config=SOILING_XML.read_text())
        frame = tmp_path / "frame.jpg"
        frame.write_bytes(make_frames(1, 320, 180, seed=3)[0].jpeg())
        ls_client.upload_images(project.id, [frame])

        ml = ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=backend.basic_auth, api_token=token)
        assert ml["state"] == "CO", ml
        again = ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=backend.basic_auth, api_token=token)
        assert again["id"] == ml["id"]  # reconnecting updates the credentials of the same connection

        assert httpx.get(f"{backend.url}/jobs", timeout=30).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        [task] = ls_client.tasks(project.id)
        ls_client.annotate(task["id"], [])  # Label Studio sends ANNOTATION_CREATED with the bearer header
        deadline = time.monotonic() + 60
        jobs: list[dict] = []
        while not jobs and time.monotonic() < deadline:
            listed = httpx.get(f"{backend.url}/jobs", headers=bearer, timeout=30).json()["jobs"]
            jobs = [j for j in listed if j["project"] == str(project.id)]
            time.sleep(1)
        assert jobs, "the webhook with the bearer token reached the backend and queued training"
        with pytest.raises(LabelStudioError, match="401"):  # Label Studio checks /setup with them first
            ls_client.ensure_ml_backend(project.id, backend.url, basic_auth=(backend.basic_auth[0], "wrong"))
        log = backend.log.read_text()
        assert token not in log and backend.basic_auth[1] not in log and backend.token not in log
    redis.Redis.from_url(REDIS_URL).flushdb()
