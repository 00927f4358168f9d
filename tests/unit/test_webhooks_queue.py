"""Webhooks against a real Redis: bursts collapse into one waiting job; Redis down gives 503."""

import pytest
import redis
from fastapi.testclient import TestClient

from backend.app import create_app
from serving.components import build_serving
from tests.services import redis_url
from tests.unit.test_app import settings_for, tasks
from training.queue import JobQueue

REDIS_URL = redis_url(14)


@pytest.fixture
def queue_client(file_server, tmp_path, soiling_config):
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = settings_for(
        file_server.url,
        tmp_path,
        redis_url=REDIS_URL,
        train_min_new_annotations=3,
        train_debounce_seconds=60,
        auto_train_kinds=["probe", "finetune"],
    )
    with TestClient(create_app(settings, build_serving(settings))) as client:
        yield client
    redis.Redis.from_url(REDIS_URL).flushdb()


def annotation_event(project: int = 5) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": project}, "annotation": {"id": 1}, "task": {"id": 2}}


def test_a_burst_of_500_annotation_webhooks_yields_one_job_per_kind(queue_client):
    responses = [queue_client.post("/webhook", json=annotation_event()).json() for _ in range(500)]
    assert [r["status"] for r in responses[:2]] == ["counted", "counted"]
    queued = {job for r in responses if r["status"] == "queued" for job in r["jobs"]}
    jobs = queue_client.get("/jobs").json()["jobs"]
    assert len(jobs) == 2 and {j["kind"] for j in jobs} == {"probe", "finetune"}
    assert queued == {j["id"] for j in jobs}
    assert all(j["status"] == "scheduled" and j["project"] == "5" for j in jobs)
    detail = queue_client.get(f"/jobs/{jobs[0]['id']}").json()
    assert detail["reason"] == "3 new annotations"
    assert queue_client.get("/jobs/nope").status_code == 404


def test_projects_are_queued_separately_and_start_training_always_trains(queue_client):
    first = queue_client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).json()
    assert first["status"] == "queued" and first["job"]  # Label Studio records `job`
    second = queue_client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 2}}).json()
    again = queue_client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).json()
    assert again["jobs"] == first["jobs"], "a waiting job is joined, not duplicated"
    assert set(second["jobs"]).isdisjoint(first["jobs"])


def test_bulk_events_count_every_annotation(queue_client):
    event = {"action": "ANNOTATIONS_DELETED", "project": {"id": 9}, "annotations": [{"id": i} for i in range(4)]}
    assert queue_client.post("/webhook", json=event).json()["status"] == "queued"


def test_a_job_starting_releases_its_pending_marker():
    from training.queue import release_pending

    redis.Redis.from_url(REDIS_URL).flushdb()
    queue = JobQueue(REDIS_URL)
    job_id, created = queue.enqueue_training(3, "probe", "test")
    assert created and queue.enqueue_training(3, "probe", "test") == (job_id, False)
    release_pending(queue.connection, 3, "probe", "some-other-job")
    assert queue.enqueue_training(3, "probe", "test") == (job_id, False)
    release_pending(queue.connection, 3, "probe", job_id)
    queue.queue.remove(job_id)  # as if a worker had taken it
    new_id, created = queue.enqueue_training(3, "probe", "test")
    assert created and new_id != job_id
    redis.Redis.from_url(REDIS_URL).flushdb()


def test_redis_down_gives_503_on_webhook_and_predict_keeps_working(file_server, tmp_path, soiling_config):
    for i in range(2):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = open_frame(i)
    file_server.required_auth = "Token legacy-token-1234567890"
    settings = settings_for(file_server.url, tmp_path, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings, build_serving(settings))) as client:
        response = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert response.status_code == 503
        assert "job queue (Redis at redis://127.0.0.1:1/0) unavailable" in response.json()["detail"]
        assert client.get("/jobs").status_code == 503
        ignored = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
        assert ignored.status_code == 200
        predicted = client.post("/predict", json={"tasks": tasks(2), "label_config": soiling_config})
        assert predicted.status_code == 200 and all("result" in r for r in predicted.json()["results"])


def open_frame(i: int) -> bytes:
    from training.synthetic import make_frames

    return make_frames(2, 160, 90, seed=3)[i].jpeg()
