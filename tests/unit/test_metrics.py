"""/metrics in Prometheus text format: requests and latency per endpoint, prediction errors by cause, the job
queue's depth, and job outcomes and durations recorded by a real RQ worker."""

from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker
from rq.job import Job, JobStatus

from backend.app import create_app
from serving.components import build_serving
from tests.services import redis_url
from tests.unit.test_app import AUTH, settings_for, tasks
from training.queue import JobQueue, JobSerializer

REDIS_URL = redis_url(12)


def promoted_job() -> dict:
    return {"status": "promoted"}


def failing_job() -> None:
    raise RuntimeError("boom")


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def client(file_server, tmp_path, frames):
    redis.Redis.from_url(REDIS_URL).flushdb()
    file_server.required_auth = "Token legacy-token-1234567890"
    for i, data in enumerate(frames):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = data
    settings = settings_for(file_server.url, tmp_path, redis_url=REDIS_URL, train_retries=0)
    with TestClient(create_app(settings, build_serving(settings)), headers=AUTH) as test_client:
        yield test_client
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture
def frames():
    from training.synthetic import make_frames

    return [frame.jpeg() for frame in make_frames(2, 160, 90, seed=3)]


def test_requests_latency_and_prediction_errors_by_cause(client, soiling_config):
    batch = [*tasks(2), {"id": 3, "data": {"image": "/data/upload/1/missing.jpg"}}, {"id": 4, "data": {}}]
    for _ in range(2):
        assert client.post("/predict", json={"tasks": batch, "label_config": soiling_config}).status_code == 200
    client.get("/jobs/no-such-job")
    found = samples(client)

    predict = labels(method="POST", endpoint="/predict", status="200")
    assert found[("lensguard_http_requests_total", predict)] == 2
    latency = labels(method="POST", endpoint="/predict")
    assert found[("lensguard_http_request_duration_seconds_count", latency)] == 2
    assert found[("lensguard_http_request_duration_seconds_sum", latency)] > 0
    job_route = labels(method="GET", endpoint="/jobs/{job_id}", status="404")
    assert found[("lensguard_http_requests_total", job_route)] == 1, "labelled by route, not by job id"
    assert found[("lensguard_tasks_predicted_total", labels())] == 4
    assert found[("lensguard_prediction_errors_total", labels(cause="fetch"))] == 2
    assert found[("lensguard_prediction_errors_total", labels(cause="no_image_url"))] == 2
    assert found[("lensguard_model_loaded", labels())] == 1

    as_json = client.get("/metrics", params={"format": "json"}).json()
    assert as_json["tasks_failed"] == 4 and as_json["tasks_predicted"] == 4
    assert as_json["prediction_errors"] == {"fetch": 2, "no_image_url": 2}
    assert client.get("/metrics", params={"format": "xml"}).status_code == 422


def test_queue_depth_and_job_outcomes_by_kind(client):
    queue = JobQueue(REDIS_URL, retries=0)
    queue.enqueue("tests.unit.test_metrics.promoted_job", (), project=1, kind="probe", reason="test")
    queue.enqueue("tests.unit.test_metrics.failing_job", (), project=1, kind="segmenter", reason="test")
    waiting = samples(client)
    assert waiting[("lensguard_queue_jobs", labels(state="queued"))] == 2
    assert waiting[("lensguard_queue_up", labels())] == 1

    SimpleWorker([queue.queue], connection=queue.connection, serializer=JobSerializer).work(burst=True)
    queue.enqueue("tests.unit.test_metrics.promoted_job", (), project=2, kind="probe", reason="test")
    found = samples(client)
    assert found[("lensguard_queue_jobs", labels(state="queued"))] == 1
    assert found[("lensguard_queue_jobs", labels(state="failed"))] == 1
    promoted = labels(kind="probe", outcome="promoted")
    failed = labels(kind="segmenter", outcome="failed")
    assert found[("lensguard_job_duration_seconds_count", promoted)] == 1
    assert found[("lensguard_job_duration_seconds_count", failed)] == 1
    assert found[("lensguard_job_duration_seconds_bucket", promoted | labels(le="+Inf"))] == 1
    assert found[("lensguard_job_duration_seconds_bucket", promoted | labels(le="1.0"))] == 1, "a job of milliseconds"


def test_metrics_say_when_the_queue_is_down(file_server, tmp_path):
    settings = settings_for(file_server.url, tmp_path, redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings, build_serving(settings)), headers=AUTH) as test_client:
        found = samples(test_client)
    assert found[("lensguard_queue_up", labels())] == 0
    assert found[("lensguard_model_loaded", labels())] == 1


def test_a_job_whose_worker_died_is_failed_and_counted_when_the_api_looks(client):
    """The API notices abandoned jobs (RQ runs their failure callback in the request's thread)."""
    queue = JobQueue(REDIS_URL, retries=0)
    job_id = queue.enqueue("tests.unit.test_metrics.promoted_job", (), project=3, kind="finetune", reason="test")
    queue.queue.remove(job_id)
    job = Job.fetch(job_id, connection=queue.connection, serializer=JobSerializer)
    job.started_at = datetime.now(UTC) - timedelta(seconds=90)
    job.set_status(JobStatus.STARTED)
    job.save()
    registry = queue.queue.started_job_registry
    queue.connection.zadd(registry.key, {f"{job_id}:dead-worker-execution": 1})  # its heartbeat expired long ago

    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.json()["status"] == "failed"
    found = samples(client)
    abandoned = labels(kind="finetune", outcome="abandoned")
    assert found[("lensguard_job_duration_seconds_count", abandoned)] == 1
    assert found[("lensguard_job_duration_seconds_sum", abandoned)] >= 90
