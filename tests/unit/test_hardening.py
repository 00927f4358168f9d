"""The hardened HTTP surface: credentials before the body, bounded requests, fair sharing, validated inputs
(every case the issue lists, with the exact status), safe job payloads and secrets kept off command lines."""

import asyncio
import base64
import json
import os
import stat
import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient

from backend.app import create_app
from serving.components import build_serving
from tests.services import redis_url
from tests.unit.test_app import API_TOKEN, AUTH, TOKEN, settings_for, tasks
from training.queue import JOBS_INDEX_KEY, TRAIN_QUEUE, JobQueue

REDIS_URL = redis_url(6)
BASIC = {"Authorization": "Basic " + base64.b64encode(b"labelstudio:basic-pass-123").decode()}
PROTECTED = [("post", "/setup"), ("post", "/predict"), ("post", "/webhook"), ("get", "/jobs"), ("get", "/jobs/x")]
PROTECTED += [("get", "/metrics"), ("get", "/openapi.json"), ("get", "/docs")]


def make_client(file_server, tmp_path, frames=(), **overrides) -> TestClient:
    file_server.required_auth = f"Token {TOKEN}"
    for i, data in enumerate(frames):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = data
    settings = settings_for(file_server.url, tmp_path, **overrides)
    return TestClient(create_app(settings, build_serving(settings)))


@pytest.fixture
def frames():
    from training.synthetic import make_frames

    return [frame.jpeg() for frame in make_frames(4, 160, 90, seed=5)]


@pytest.fixture
def secured(file_server, tmp_path, frames):
    settings = dict(basic_auth_user="labelstudio", basic_auth_pass="basic-pass-123", redis_url=REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    with make_client(file_server, tmp_path, frames, **settings) as client:
        yield client
    redis.Redis.from_url(REDIS_URL).flushdb()


# credentials ---------------------------------------------------------------------------------------------
def test_every_endpoint_but_health_needs_credentials(secured, soiling_config):
    assert secured.get("/health").status_code == 200
    for method, path in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!notbase64"}):
            response = getattr(secured, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert "Bearer" in response.headers["www-authenticate"]
    for headers in (AUTH, BASIC):
        response = secured.post("/setup", json={"schema": soiling_config}, headers=headers)
        assert response.status_code == 200


def test_auth_is_on_by_default_and_off_only_when_asked(file_server, tmp_path):
    with make_client(file_server, tmp_path, api_token=None) as client:  # no credentials configured
        assert client.get("/metrics").status_code == 401
        assert any("no credentials configured" in w for w in client.get("/health").json()["warnings"])
    with make_client(file_server, tmp_path, api_token=None, auth=False) as client:
        assert client.get("/metrics").status_code == 200
        assert any("LENSGUARD_AUTH=off" in w for w in client.get("/health").json()["warnings"])


def asgi_call(app, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """(status, body messages the app took): the request sent straight to the ASGI app."""
    taken = []

    async def receive():
        taken.append(1)
        if len(taken) <= len(chunks):
            return {"type": "http.request", "body": chunks[len(taken) - 1], "more_body": len(taken) < len(chunks)}
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], len(taken)


def test_credentials_and_size_are_checked_before_the_body_is_read(secured):
    app = secured.app
    big = [b"x" * 1024 * 1024] * 20
    assert asgi_call(app, "/predict", [(b"content-length", str(20 * 2**20).encode())], big) == (401, 0)
    auth = [(b"authorization", AUTH["Authorization"].encode())]
    assert asgi_call(app, "/predict", [*auth, (b"content-length", str(20 * 2**20).encode())], big) == (413, 0)
    assert asgi_call(app, "/predict", [*auth, (b"content-length", b"12abc")], [b"{}"]) == (400, 0)
    status, taken = asgi_call(app, "/predict", auth, big)  # chunked, no Content-Length: stops past the limit
    assert status == 413 and taken == 9  # 8 MiB limit: the ninth MiB goes over


# every malformed input is a 4xx ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("project", "status"),
    [({}, 422), ({"id": None}, 422), ("abc", 422), (True, 422), (1e308, 422), (-1, 422), ({"id": "1\x00"}, 422)],
)
def test_malformed_webhook_projects_are_422_and_later_webhooks_still_count(secured, project, status):
    event = {"action": "ANNOTATION_CREATED", "project": project}
    assert secured.post("/webhook", json=event, headers=AUTH).status_code == status
    good = secured.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 5}}, headers=AUTH)
    assert good.status_code == 200 and good.json()["status"] == "counted"


def test_a_5000_digit_project_id_is_a_4xx(secured):
    body = b'{"action": "ANNOTATION_CREATED", "project": {"id": ' + b"9" * 5000 + b"}}"
    response = secured.post("/webhook", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    response = secured.post("/webhook", json={"action": "START_TRAINING", "project": "9" * 5000}, headers=AUTH)
    assert response.status_code == 422


def test_one_bad_image_url_is_a_per_task_error_not_a_batch_500(secured, soiling_config):
    bad = ["http://[::1", "http://example.com:99999/x.jpg", "http://example.com:abc/x.jpg", "http://x/" + "a" * 65536]
    batch = tasks(1) + [{"id": 10 + i, "data": {"image": url}} for i, url in enumerate(bad)]
    response = secured.post("/predict", json={"tasks": batch, "label_config": soiling_config}, headers=AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert "result" in results[0]
    assert all("refused" in r["error"] for r in results[1:])


@pytest.mark.parametrize("project", ["1\x00", "9" * 5000, "../../etc", "1.2.3", " 1"])
def test_malformed_projects_on_predict_and_setup_are_422_and_nothing_is_stored(secured, soiling_config, project):
    predict = {"tasks": tasks(1), "label_config": soiling_config, "project": project}
    assert secured.post("/predict", json=predict, headers=AUTH).status_code == 422
    assert secured.post("/setup", json={"project": project, "schema": soiling_config}, headers=AUTH).status_code == 422
    assert len(secured.app.state.label_configs) == 0


def test_setup_validates_the_config_before_storing_it(secured):
    bad = secured.post(
        "/setup", json={"project": "4.1", "schema": "<View><Text name='t' value='$t'/></View>"}, headers=AUTH
    )
    assert bad.status_code == 422 and "4" not in secured.app.state.label_configs


def test_label_configs_from_setup_are_an_lru_of_bounded_size(file_server, tmp_path, soiling_config):
    with make_client(file_server, tmp_path, max_cached_label_configs=2) as client:
        for project in ("1.1", "2.1", "1.2", "3.1"):
            assert (
                client.post("/setup", json={"project": project, "schema": soiling_config}, headers=AUTH).status_code
                == 200
            )
        assert list(client.app.state.label_configs) == ["1", "3"]  # 2 was the least recently used


def test_label_configs_are_bounded_in_size_too(secured):
    from backend.app import LabelConfigs

    huge = {"project": "1", "schema": "<View>" + " " * 1_000_000 + "</View>"}
    assert secured.post("/setup", json=huge, headers=AUTH).status_code == 422
    configs = LabelConfigs(10, max_chars=100)
    for project in "abc":
        configs.put(project, "x" * 40)
    assert list(configs) == ["b", "c"]


@pytest.mark.parametrize("limit", ["0", "-1", str(10**30), str(-(10**30)), "1001", "abc"])
def test_jobs_limit_out_of_range_is_422_never_503(secured, limit):
    response = secured.get(f"/jobs?limit={limit}", headers=AUTH)
    assert response.status_code == 422
    assert "redis" not in response.text.lower()


@pytest.mark.parametrize("job_id", ["%00", "%C3%A9t%C3%A9", "%E2%98%83-1", "a%0Ab", "." * 3])
def test_odd_job_ids_are_404(secured, job_id):
    assert secured.get(f"/jobs/{job_id}", headers=AUTH).status_code == 404


def test_too_many_tasks_is_a_413_naming_the_limit(file_server, tmp_path, soiling_config):
    with make_client(file_server, tmp_path, max_tasks_per_request=3) as client:
        response = client.post("/predict", json={"tasks": tasks(4), "label_config": soiling_config}, headers=AUTH)
        assert response.status_code == 413
        assert (
            "at most 3" in response.json()["detail"] and "LENSGUARD_MAX_TASKS_PER_REQUEST" in response.json()["detail"]
        )


def test_a_body_over_the_size_limit_is_413(secured):
    body = json.dumps({"tasks": [], "label_config": "x" * (9 * 2**20)})
    response = secured.post("/predict", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413


# bounded time and fair sharing ---------------------------------------------------------------------------
def test_tasks_past_the_time_budget_get_per_task_errors(file_server, tmp_path, frames, soiling_config):
    options = dict(predict_time_budget=1.0, predict_chunk_size=2, fetch_threads_per_request=1)
    with make_client(file_server, tmp_path, frames, **options) as client:
        for i in range(4):
            file_server.delays[f"/data/upload/1/frame{i}.jpg"] = 0.6
        body = {"tasks": tasks(4), "label_config": soiling_config}
        results = client.post("/predict", json=body, headers=AUTH).json()["results"]
    assert "result" in results[0]
    assert all("time budget" in r.get("error", "") for r in results[2:])


def test_a_slow_batch_does_not_starve_a_single_image_predict(file_server, tmp_path, frames, soiling_config):
    options = dict(fetch_threads=4, fetch_threads_per_request=2)
    with make_client(file_server, tmp_path, frames, **options) as client:
        client.post("/predict", json={"tasks": tasks(1), "label_config": soiling_config}, headers=AUTH)  # warm
        for i in range(12):
            file_server.files[f"/data/upload/2/slow{i}.jpg"] = frames[0]
            file_server.delays[f"/data/upload/2/slow{i}.jpg"] = 0.5
        slow = [{"id": 100 + i, "data": {"image": f"/data/upload/2/slow{i}.jpg"}} for i in range(12)]
        finished: list[str] = []

        def run(name, batch):
            client.post("/predict", json={"tasks": batch, "label_config": soiling_config}, headers=AUTH)
            finished.append(name)

        batch = threading.Thread(target=run, args=("slow batch", slow))
        batch.start()
        time.sleep(0.3)
        run("single image", [{"id": 1, "data": {"image": "/data/upload/1/frame1.jpg"}}])
        batch.join()
    assert finished == ["single image", "slow batch"]


# OpenAPI ----------------------------------------------------------------------------------------------
def test_openapi_describes_the_real_bodies_and_every_status(secured):
    schema = secured.get("/openapi.json", headers=AUTH).json()
    predict = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422", "503"} <= set(predict)
    assert schema["paths"]["/jobs/{job_id}"]["get"]["responses"].keys() >= {"401", "404", "422", "503"}
    event = schema["components"]["schemas"]["WebhookEvent"]["properties"]
    assert event["action"]["pattern"] == "^[A-Z_]+$"
    forms = event["project"]["anyOf"]
    assert {f.get("type") for f in forms} == {"string", "integer", "object", "null"}
    assert "image" in json.dumps(schema["components"]["schemas"]["Task"])


# job payloads -------------------------------------------------------------------------------------------
def test_jobs_are_json_and_a_pickled_job_never_runs(tmp_path):
    import zlib

    from rq import Queue

    from lensguard.worker import HeartbeatWorker

    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    queue = JobQueue(REDIS_URL, retries=0)
    job_id = queue.enqueue("os.path.join", (str(tmp_path), "ok"), 1, "test", "unit")
    payload = connection.hget(f"rq:job:{job_id}", "data")
    assert json.loads(zlib.decompress(payload)) == ["os.path.join", None, [str(tmp_path), "ok"], {}]
    planted = tmp_path / "pwned"
    Queue(TRAIN_QUEUE, connection=connection).enqueue("os.makedirs", str(planted), job_id="planted-1")
    connection.zadd(JOBS_INDEX_KEY, {"planted-1": time.time()})
    HeartbeatWorker([queue.queue], connection=connection).work(burst=True)
    assert not planted.exists()
    jobs = {job["id"]: job for job in queue.jobs(10)}
    assert jobs[job_id]["result"] == os.path.join(str(tmp_path), "ok")
    assert jobs["planted-1"]["status"] == "failed"
    connection.flushdb()


# secrets ----------------------------------------------------------------------------------------------
def test_secret_files_are_private_from_the_start(tmp_path, monkeypatch):
    from lensguard.launcher import read_or_create_secret, write_secret

    monkeypatch.setattr(os, "umask", os.umask)  # restored whatever happens
    previous = os.umask(0)  # the widest umask: only the creation mode protects the file
    try:
        write_secret(tmp_path / "a" / "token", "s3cret")
        made = read_or_create_secret(tmp_path / "b", lambda: "generated")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600
    assert made == "generated" and read_or_create_secret(tmp_path / "b", lambda: "other") == "generated"


def test_label_studio_secrets_go_through_the_environment_not_the_command_line(tmp_path, monkeypatch):
    import subprocess

    from lensguard import launcher

    seen = {}

    def fake_popen(command, **kwargs):
        seen.update(command=command, env=kwargs["env"])
        raise RuntimeError("not started")

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    monkeypatch.setattr(launcher, "label_studio_binary", lambda: tmp_path / "label-studio")
    login = launcher.LabelStudioLogin("http://127.0.0.1:1", "user@x", "pass-secret-1", "token-secret-2")
    with pytest.raises(RuntimeError):
        launcher.start_label_studio(1, tmp_path / "data", login, tmp_path / "log")
    assert not any(s in " ".join(seen["command"]) for s in ("pass-secret-1", "token-secret-2", "user@x"))
    assert seen["env"]["LABEL_STUDIO_PASSWORD"] == "pass-secret-1"
    assert seen["env"]["LABEL_STUDIO_USER_TOKEN"] == "token-secret-2"
    assert seen["env"]["LABEL_STUDIO_USERNAME"] == "user@x"


def test_no_secret_in_any_answer(secured, soiling_config):
    answers = [
        secured.get("/health"),
        secured.get("/metrics", headers=AUTH),
        secured.post("/predict", json={"tasks": tasks(2), "label_config": soiling_config}, headers=AUTH),
        secured.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}, headers=AUTH),
        secured.get("/jobs", headers=AUTH),
    ]
    for response in answers:
        for secret in (TOKEN, API_TOKEN, "basic-pass-123", REDIS_URL):
            assert secret not in response.text


def test_secrets_command_makes_private_credential_files_the_settings_read(tmp_path):
    from lensguard.cli import main
    from settings import Settings

    main(["secrets", str(tmp_path / "secrets")])
    files = sorted((tmp_path / "secrets").iterdir())
    assert [f.name for f in files] == ["lensguard_api_token", "lensguard_basic_auth_pass", "lensguard_basic_auth_user"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    settings = Settings(_env_file=None, _secrets_dir=tmp_path / "secrets")
    assert settings.api_token.get_secret_value() == (tmp_path / "secrets" / "lensguard_api_token").read_text()
    assert settings.basic_auth_user == "labelstudio" and settings.basic_auth_pass is not None


def test_redis_with_password_and_tls_is_a_url_away():
    from training.queue import connect

    pool = connect("rediss://:queue-pass@queue-host:6380/0?ssl_ca_certs=/etc/ssl/ca.pem").connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["password"] == "queue-pass"
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"
