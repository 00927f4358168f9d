"""One image fetcher and one embedding-cache connection per process, shared by the jobs a worker runs (its
heartbeat thread beating beside them) and closed when the worker stops; a forked child opens its own."""

from __future__ import annotations

import os

import redis

from lensguard.worker import HeartbeatWorker
from serving.components import build_fetcher
from serving.resources import PROCESS, close_process_resources, process_embedding_cache, process_fetcher
from settings import Settings, get_settings
from tests.services import redis_url
from training.queue import connect, job_queue

REDIS_URL = redis_url(4)
SEEN: list[tuple] = []  # what each job used, in this process


def settings_in(directory) -> Settings:
    return Settings(_env_file=None, data_dir=directory, label_studio_url="http://127.0.0.1:1")


def job_using_resources() -> dict:
    """A job body as training jobs use them: the fetcher and the cache of the worker's settings."""
    settings = get_settings()
    fetcher, cache = build_fetcher(settings), process_embedding_cache(settings)
    SEEN.append((fetcher, cache))
    return {"fetcher": id(fetcher), "cache": id(cache), "pid": os.getpid()}


def test_the_same_settings_share_one_fetcher_and_cache_and_closing_opens_fresh_ones(tmp_path):
    settings = settings_in(tmp_path)
    fetcher, cache = process_fetcher(settings), process_embedding_cache(settings)
    assert build_fetcher(settings) is fetcher and process_embedding_cache(settings_in(tmp_path)) is cache
    other = Settings(_env_file=None, data_dir=tmp_path / "other", label_studio_url="http://127.0.0.1:2")
    assert process_fetcher(other) is not fetcher and process_embedding_cache(other) is not cache
    close_process_resources()
    assert fetcher.closed and cache.closed
    assert process_fetcher(settings) is not fetcher and not process_fetcher(settings).closed
    assert process_embedding_cache(settings).count() == 0
    close_process_resources()


def test_a_forked_child_opens_its_own_and_never_closes_the_parents(tmp_path):
    settings = settings_in(tmp_path)
    cache = process_embedding_cache(settings)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            own = process_embedding_cache(settings)
            own.count()
            PROCESS.close()
            os.write(write, b"ok" if own is not cache and own.closed else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 10)
    os.waitpid(child, 0)
    assert answer == b"ok"
    assert not cache.closed and cache.count() == 0, "the parent's connection still works"
    close_process_resources()


def test_two_jobs_in_one_worker_share_the_fetcher_and_cache_which_close_when_the_worker_stops(tmp_path, monkeypatch):
    connection = connect(REDIS_URL)
    connection.flushdb()
    monkeypatch.setenv("LENSGUARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LENSGUARD_LABEL_STUDIO_URL", "http://127.0.0.1:1")
    get_settings.cache_clear()
    SEEN.clear()
    queue = job_queue(connection, "train")
    jobs = [queue.enqueue(f"{__name__}.job_using_resources") for _ in range(2)]
    try:
        HeartbeatWorker([queue], connection=connection).work(burst=True)
        results = [job.latest_result() for job in jobs]
        assert [r.type.name for r in results] == ["SUCCESSFUL", "SUCCESSFUL"]
        first, second = (r.return_value for r in results)
        assert first == second and first["pid"] == os.getpid(), "one fetcher and one cache, reused across jobs"
        assert len(SEEN) == 2 and SEEN[0][0] is SEEN[1][0] and SEEN[0][1] is SEEN[1][1]
        fetcher, cache = SEEN[0]
        assert fetcher.closed and cache.closed, "closed when the worker stopped"
    finally:
        connection.flushdb()
        get_settings.cache_clear()
        redis.Redis.from_url(REDIS_URL).close()
