"""Batch jobs at scale without Label Studio: frames whose embedding is cached are not fetched again, the Data
Manager's version list is read exactly (or flagged as cut), selection stays bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelstudio.tasks import VERSIONS_SHOWN, prediction_versions
from models.embedding_cache import EmbeddingCache
from serving.components import build_serving
from tests.unit.test_app import TOKEN, settings_for, tasks
from training.selection import Pool, k_center_greedy, select, suppress_near_duplicates
from training.synthetic import make_frames

SOILING_XML = (Path(__file__).resolve().parents[2] / "labeling_config" / "soiling.xml").read_text()


def test_a_batch_job_does_not_fetch_frames_whose_embedding_is_cached(file_server, tmp_path):
    file_server.required_auth = f"Token {TOKEN}"
    for i, frame in enumerate(make_frames(3, 320, 180, seed=4)):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = frame.jpeg()
    service = build_serving(settings_for(file_server.url, tmp_path)).service
    first = service.predict(tasks(2), SOILING_XML, "1")  # /predict fetches, embeds and records url -> hash
    assert len(file_server.seen_paths) == 2
    batch = service.prepare(tasks(3), SOILING_XML, "1", reuse_cached=True)
    assert file_server.seen_paths[2:] == ["/data/upload/1/frame2.jpg"], "only the frame never embedded is fetched"
    again = service.finish(batch)
    assert [p["score"] for p in again[:2]] == [p["score"] for p in first], "the cached embeddings score the same"
    assert "result" in again[2] and again[2]["task"] == 3
    service.prepare(tasks(3), SOILING_XML, "1")  # without reuse (as /predict) every frame is fetched
    assert len(file_server.seen_paths) == 6


def test_the_url_index_only_answers_for_embeddings_of_the_encoder(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite3")
    cache.put_many("enc-a", {"h1": np.ones(4, np.float32)})
    cache.remember_urls({"/data/upload/1/a.jpg": "h1", "/data/upload/1/b.jpg": "h2"})
    urls = ["/data/upload/1/a.jpg", "/data/upload/1/b.jpg", "/data/upload/1/c.jpg"]
    assert cache.hashes_for_urls("enc-a", urls) == {"/data/upload/1/a.jpg": "h1"}
    assert cache.hashes_for_urls("enc-b", urls) == {}
    cache.remember_urls({"/data/upload/1/a.jpg": "h3"})  # fetched again, other bytes: no embedding of them yet
    assert cache.hashes_for_urls("enc-a", urls) == {}


def test_prediction_versions_come_from_predictions_or_the_data_manager_column():
    assert prediction_versions({"predictions": [{"model_version": "a"}, {"model_version": "b+c"}]}) == {"a", "b+c"}
    assert prediction_versions({"predictions_model_versions": "a, b+c"}) == {"a", "b+c"}  # PostgreSQL
    assert prediction_versions({"predictions_model_versions": "a,b+c,a"}) == {"a", "b+c"}  # SQLite
    assert prediction_versions({"predictions_model_versions": ""}) == set()
    assert prediction_versions({"predictions_model_versions": "v" * (VERSIONS_SHOWN - 1)}) is None, "maybe cut"


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_k_center_greedy_matches_the_pairwise_definition():
    points = unit_rows(200, 16, seed=3)
    picked = k_center_greedy(points, 10).tolist()
    distance = 1 - points @ points.T
    for step in range(1, len(picked)):
        nearest = distance[:, picked[:step]].min(axis=1)
        nearest[picked[:step]] = -np.inf
        assert picked[step] == int(np.argmax(nearest)), "each pick is the farthest from all earlier picks"


def test_suppression_stops_at_the_budget_and_selection_spans_a_large_pool():
    points = unit_rows(20_000, 32, seed=5)
    pool = Pool(np.random.default_rng(6).random(20_000), points, [f"task:{i}" for i in range(20_000)])
    for strategy in ("combined", "diversity", "least-confident"):
        chosen = select(pool, strategy, budget=50)
        assert len(chosen) == 50 and len(set(chosen.tolist())) == 50, strategy
    twins = np.concatenate([points[:1], points[:1], points[1:3]])
    kept = suppress_near_duplicates(np.arange(4), list("abcd"), twins, limit=2)
    assert kept.tolist() == [0, 2], "the twin is suppressed and the budget stops the scan"
