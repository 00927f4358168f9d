"""The VLM's hourly cap is one cap for the deployment: processes taking frames at once never exceed it together,
the hour slides, and a process whose Redis is gone still caps itself."""

from concurrent.futures import ProcessPoolExecutor

import redis

from serving.vlm_budget import SharedHourlyBudget
from tests.services import redis_url
from tests.unit.test_vlm_cascade import FakeClock

REDIS_URL = redis_url(5)
KEY = "lensguard:test:vlm-budget"


def take_in_another_process(wanted_per_call: int, calls: int) -> int:
    budget = SharedHourlyBudget(redis.Redis.from_url(REDIS_URL), per_hour=50, key=KEY)
    return sum(budget.take(wanted_per_call) for _ in range(calls))


def test_processes_taking_at_once_share_one_cap():
    redis.Redis.from_url(REDIS_URL).delete(KEY)
    with ProcessPoolExecutor(max_workers=4) as pool:
        granted = list(pool.map(take_in_another_process, [3] * 8, [5] * 8))
    assert sum(granted) == 50, granted  # 8 processes asked for 120 frames in all
    assert SharedHourlyBudget(redis.Redis.from_url(REDIS_URL), 50, KEY).granted_last_hour() == 50


def test_the_shared_hour_slides():
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(KEY)
    clock = FakeClock()
    clock.now = 1_000_000.0
    first, second = (SharedHourlyBudget(connection, 5, KEY, clock) for _ in range(2))
    assert first.take(3) == 3
    clock.now += 1800
    assert second.take(3) == 2
    assert first.take(1) == 0
    clock.now += 1800  # the first three leave the window
    assert second.take(4) == 3


def test_without_redis_a_process_caps_itself():
    budget = SharedHourlyBudget(redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5), 4, KEY)
    assert [budget.take(3), budget.take(3)] == [3, 1]
