"""The retraining loop with the model registry on S3 (moto's server) and no filesystem shared between the backend
and the worker: the worker's version lands in the bucket, and the backend serves it without restart."""

from __future__ import annotations

import time

import fsspec
import httpx
import pytest

from tests.e2e.conftest import launch_stack
from tests.e2e.test_retraining import SOILING_XML, choice, is_dirty, jobs_for, project_with_frames, wait_job_end
from tests.s3_server import s3_server, storage_options
from tests.services import redis_url

REDIS_URL = redis_url(10)
BUCKET = "lensguard-e2e"


@pytest.fixture(scope="module")
def s3_stack(label_studio, ls_pat, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-retraining")
    with s3_server() as endpoint:
        fsspec.filesystem("s3", **storage_options(endpoint)).mkdir(BUCKET)
        settings = dict(
            train_min_new_annotations="4",
            train_debounce_seconds="4",
            train_retries="0",
            auto_train_kinds="probe",
            model_dir=f"s3://{BUCKET}/registry",
            s3_endpoint_url=endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
            model_poll_seconds="1",
        )
        worker_env = {"LENSGUARD_DATA_DIR": str(root / "worker")}  # a machine of its own
        with launch_stack(label_studio, ls_pat, root, REDIS_URL, worker_env=worker_env, **settings) as running:
            yield running.backend, endpoint


def test_a_version_trained_on_another_machine_reaches_the_backend_through_s3(ls_client, s3_stack, tmp_path):
    backend, endpoint = s3_stack
    project_id, tasks = project_with_frames(ls_client, backend, tmp_path, "s3 registry", 20, seed=33)
    labelled = [t for t in tasks if is_dirty(t)][:6] + [t for t in tasks if not is_dirty(t)][:6]
    for task in labelled:
        ls_client.annotate(task["id"], choice("dirty" if is_dirty(task) else "clean"))
    deadline = time.monotonic() + 60
    while not jobs_for(backend, project_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    [job] = jobs_for(backend, project_id)
    job = wait_job_end(backend, job["id"])
    assert job["status"] == "finished" and job["result"]["status"] == "promoted", job
    version = job["result"]["version"]

    fs = fsspec.filesystem("s3", **storage_options(endpoint))
    kind_dir = f"{BUCKET}/registry/project-{project_id}/probe"
    assert {"probe.npz", "config.json", "metrics.json", "report.png"} <= {
        path.rsplit("/", 1)[1] for path in fs.find(f"{kind_dir}/{version}")
    }
    beside = {path.rsplit("/", 1)[1] for path in fs.ls(kind_dir)}
    assert {"active.json", "learning_curve.json", "learning_curve.png"} <= beside
    assert not (backend.data_dir / "models").exists(), "nothing is written to a local registry"

    deadline = time.monotonic() + 30
    while True:
        setup = httpx.post(
            f"{backend.url}/setup",
            json={"project": f"{project_id}.1", "schema": SOILING_XML},
            auth=httpx.BasicAuth(*backend.basic_auth),
            timeout=30,
        ).json()
        if setup["model_version"].startswith(version) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert setup["model_version"].startswith(version + "+zeroshot-"), "the backend serves the promoted version"
    cached = backend.data_dir / "model-cache"
    assert any(p.name == version for p in cached.rglob(version)), "downloaded into the backend's own cache"
