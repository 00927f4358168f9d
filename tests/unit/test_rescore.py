"""Cluster ids, prediction claims and the supersede rule of re-scoring runs (real Redis, no Label Studio)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job

from backend.app import create_app
from models.clusters import CLUSTER_BITS, embedding_clusters, group_cluster
from serving.components import build_serving
from tests.services import redis_url
from tests.unit.test_app import AUTH, TOKEN, settings_for, tasks
from training.claims import PLAN_TRUST_SECONDS, claim, hold_written
from training.preannotate import carried
from training.queue import CLUSTERS_QUEUE, JobSerializer, start_run
from training.runs import RESCORE_SEQUENCE_KEY, Run
from training.synthetic import make_frames

REDIS_URL = redis_url(10)
REPO = Path(__file__).resolve().parents[2]
SOILING_XML = (REPO / "labeling_config" / "soiling.xml").read_text()


@pytest.fixture
def connection():
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def image_server(file_server):
    """Four synthetic frames where Label Studio would serve uploads."""
    file_server.required_auth = f"Token {TOKEN}"
    for i, frame in enumerate(make_frames(4, 320, 180, seed=1)):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = frame.jpeg()
    return file_server


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_embedding_clusters_are_stable_and_near_duplicates_share_one():
    frames = unit_rows(300, 512, seed=1)
    clusters = embedding_clusters(frames)
    assert clusters.min() >= 0 and clusters.max() < 2**CLUSTER_BITS
    assert np.array_equal(clusters, embedding_clusters(frames.copy())), "the same embedding, the same id, always"
    assert len(set(clusters.tolist())) >= 32, "distinct scenes spread over the clusters"
    noise = unit_rows(300, 512, seed=2) * 0.03  # re-encoded or consecutive frames: cosine about 0.9995
    near = frames + noise
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    assert (np.sum(near * frames, axis=1) > 0.999).all()
    assert (embedding_clusters(near) == clusters).mean() > 0.9


def test_named_groups_get_stable_ids_apart_from_embedding_clusters():
    assert group_cluster("camera:cam-3") == group_cluster("camera:cam-3")
    assert group_cluster("camera:cam-3") != group_cluster("camera:cam-4")
    assert 2**CLUSTER_BITS <= group_cluster("sequence:F1") < 2**31  # Label Studio stores a 32-bit integer


def test_predictions_carry_clusters_that_do_not_change_with_the_served_version(image_server, tmp_path):
    prompts = json.loads((REPO / "models" / "prompt_sets" / "soiling-v1.json").read_text())
    prompts["name"] = "other-wording"
    prompts["classes"]["dirty"] = prompts["classes"]["dirty"][:1]
    (tmp_path / "other.json").write_text(json.dumps(prompts))
    named = tasks(4)
    named[3]["data"]["camera"] = "cam-9"
    served = []
    for prompt_set in ("soiling-v1", str(tmp_path / "other.json")):
        service = build_serving(settings_for(image_server.url, tmp_path, prompt_set=prompt_set)).service
        served.append(service.predict(named, SOILING_XML, "1"))
    first, other = served
    assert first[0]["model_version"] != other[0]["model_version"]
    assert [p["cluster"] for p in first] == [p["cluster"] for p in other], "the encoder decides, not the version"
    assert first[3]["cluster"] == group_cluster("camera:cam-9"), "a named group wins over the embedding"
    assert all(0 <= p["cluster"] < 2**CLUSTER_BITS for p in first[:3])


def test_claims_let_one_writer_per_task_and_version_and_a_retry_reclaims_its_own(connection):
    assert claim(connection, 1, "v1", [1, 2], "chunk-a", 60) == {1, 2}
    assert claim(connection, 1, "v1", [2, 3], "chunk-b", 60) == {3}
    assert claim(connection, 1, "v1", [1, 2], "chunk-a", 60) == {1, 2}, "a retried chunk owns its claims again"
    assert claim(connection, 1, "v2", [1, 2], "chunk-b", 60) == {1, 2}, "another version is another claim"
    assert claim(connection, 2, "v1", [1], "chunk-b", 60) == {1}, "another project too"
    assert claim(connection, 1, "v1", [4], "predict", 60) == {4}
    assert claim(connection, 1, "v1", [4], "predict", 60) == {4}, "a later /predict still answers"
    assert claim(connection, 1, "v1", [4], "chunk-a", 60) == set(), "a batch writer skips what /predict answered"


def test_predict_answers_nothing_for_tasks_a_batch_writer_claimed(image_server, tmp_path, connection):
    settings = settings_for(image_server.url, tmp_path, redis_url=REDIS_URL)
    label_config = SOILING_XML
    with TestClient(create_app(settings, build_serving(settings)), headers=AUTH) as client:
        version = client.get("/health").json()["model_version"]
        assert claim(connection, 7, version, [2], "run-7-chunk-0", 60) == {2}
        body = {"tasks": tasks(3), "label_config": label_config, "project": "7.1717"}
        results = client.post("/predict", json=body).json()["results"]
        assert results[1] == [], "Label Studio stores nothing for task 2: the chunk writes it"
        assert [results[0]["task"], results[2]["task"]] == [1, 3]
        assert claim(connection, 7, version, [1, 3], "run-7-chunk-1", 60) == set(), "the chunk skips 1 and 3"


def test_a_newer_promotion_supersedes_a_run_which_never_switches(connection):
    start_run(connection, "run-5-rescore-1", 5, "probe-a+zeroshot", [[1, 2], [3]], "plan", 60, rescore=1)
    connection.set(RESCORE_SEQUENCE_KEY.format(project=5), 1)
    run = Run.load(connection, "run-5-rescore-1")
    assert not run.superseded()
    connection.incr(RESCORE_SEQUENCE_KEY.format(project=5))  # the next promotion's run
    assert run.superseded()
    run.finish()  # no Label Studio is configured here: a switch attempt would raise
    assert connection.hget(run.key, "switched") is None and connection.hget(run.key, "superseded") is not None
    assert connection.hget(run.key, "clustering") is None, "a superseded run's predictions are not clustered"
    assert Run.load(connection, "run-5-rescore-1").superseded(), "and its remaining chunks stop"


def test_each_chunk_counts_once_and_the_last_one_starts_the_cluster_jobs(connection):
    start_run(connection, "run-6-1", 6, "v", [[1, 2], [3]], "plan", 60)
    run = Run.load(connection, "run-6-1")
    run.record([{"task": t, "cluster": 3, "score": 1 - t / 10, "model_version": "v"} for t in (1, 2, 3)])
    run.chunk_done("run-6-1-chunk-0", {"done": 2, "failed": 0})
    run.chunk_done("run-6-1-chunk-0", {"done": 2, "failed": 0})  # a retry of a chunk whose first attempt counted
    assert int(connection.hget(run.key, "done")) == 2 and connection.hget(run.key, "clustering") is None
    run.chunk_done("run-6-1-chunk-1", {"done": 1, "failed": 0})
    assert int(connection.hget(run.key, "to_cluster")) == 3
    assert Queue(CLUSTERS_QUEUE, connection=connection).job_ids == ["run-6-1-cluster-0"], "after any pre-annotation"
    job = Job.fetch("run-6-1-cluster-0", connection=connection, serializer=JobSerializer)
    assert job.args[2] == [3, 2, 1], "the most uncertain first"


def test_a_first_attempt_soon_after_its_planning_read_trusts_it_and_a_retry_reads_again(connection):
    task = {"id": 1, "data": {"image": "/data/upload/1/a.jpg"}, "meta": {}, "annotations": [{"id": 9}]}
    chunks = [[carried(task), carried({"id": 2, "data": {"text": "x" * 5000}})]]
    start_run(connection, "run-8-rescore-1", 8, "v", chunks, "plan", 60, rescore=1, planned_from=time.time())
    job = Job.fetch("run-8-rescore-1-chunk-0", connection=connection, serializer=JobSerializer)
    assert job.args[2] == [{"id": 1, "data": task["data"], "meta": {}}, 2], "a large task: its id"
    run = Run.load(connection, "run-8-rescore-1")
    assert run.plan_trusted("run-8-rescore-1-chunk-0")
    assert not run.plan_trusted("run-8-rescore-1-chunk-0"), "a retry may find its dead attempt's writes"
    connection.hset(run.key, "planned_from", time.time() - PLAN_TRUST_SECONDS - 1)
    assert not run.plan_trusted("run-8-rescore-1-chunk-1"), "an old read is read again"
    start_run(connection, "run-8-2", 8, "v", [[1]], "plan", 60)
    assert not Run.load(connection, "run-8-2").plan_trusted("run-8-2-chunk-0"), "a run planned on ids reads"


def test_a_written_task_stays_claimed_for_as_long_as_a_planning_read_is_trusted(connection):
    assert claim(connection, 1, "v1", [1, 2], "chunk-a", 5) == {1, 2}
    assert claim(connection, 1, "v1", [3], "chunk-a", 10 * PLAN_TRUST_SECONDS) == {3}
    hold_written(connection, 1, "v1", [1, 3])
    ttl = {task: connection.ttl(next(connection.scan_iter(f"lensguard:claim:1:*:{task}"))) for task in (1, 2, 3)}
    assert ttl[1] > PLAN_TRUST_SECONDS - 5 and ttl[2] <= 5, "only the written task is held longer"
    assert ttl[3] > 9 * PLAN_TRUST_SECONDS, "never shortened"


def test_every_queued_function_path_names_a_function():
    from rq.utils import import_attribute

    from training import queue

    for name in dir(queue):
        if name.endswith("_FUNCTION"):
            assert callable(import_attribute(getattr(queue, name))), name
