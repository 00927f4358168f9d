"""The VLM's hourly frame cap shared by every process that runs it (the backend's /predict and each worker), so
`LENSGUARD_VLM_MAX_PER_HOUR` caps the deployment, not each process. A sliding hour kept in one Redis sorted set,
taken atomically by a script; where Redis cannot be reached the process falls back to its own in-process cap."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import redis

from models.cascade import HOUR, HourlyBudget

log = logging.getLogger(__name__)
BUDGET_KEY = "lensguard:vlm:granted"

# KEYS[1]: the sorted set of grants (member -> time); ARGV: now, cap, wanted, a member prefix unique to the call.
TAKE_SCRIPT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
local granted = math.max(0, math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])))
for i = 1, granted do
    redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
end
redis.call('EXPIRE', KEYS[1], 3600)
return granted
"""


class SharedHourlyBudget(HourlyBudget):
    def __init__(
        self,
        connection: redis.Redis,
        per_hour: int,
        key: str = BUDGET_KEY,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(per_hour, clock)
        self.connection = connection
        self.key = key
        self._take = connection.register_script(TAKE_SCRIPT)
        self._warned = False

    def take(self, wanted: int) -> int:
        if wanted <= 0 or self.per_hour <= 0:
            return 0
        try:
            return int(self._take(keys=[self.key], args=[self.clock(), self.per_hour, wanted, secrets.token_hex(8)]))
        except redis.RedisError as exc:
            if not self._warned:
                log.warning("VLM hourly cap: Redis unreachable (%s); capping this process alone", exc)
                self._warned = True
            return super().take(wanted)

    def granted_last_hour(self) -> int:
        return int(self.connection.zcount(self.key, self.clock() - HOUR, "+inf"))
