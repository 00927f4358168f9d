"""One prediction per task and version, whichever writers run at once.

Every path that makes Label Studio store a prediction (pre-annotation and re-scoring chunks, `/predict` for
Label Studio's retrieve action) first claims (project, version, task) in Redis with SET NX. Only the claim's
owner writes; a chunk retried after its worker died owns its claims again (its owner is its job id), and
re-checks Label Studio before writing, so what the dead attempt wrote is not written twice. `/predict` answers
an empty list for a task a batch writer holds; its own claims stop batch writers but not a later `/predict`
(Label Studio itself skips tasks that already hold the version, and direct callers get an answer).

A chunk may also skip that re-check and trust its planning job's read of Label Studio, on its first attempt and
within `PLAN_TRUST_SECONDS` of that read: whatever any writer stored since the read, it claimed first, and that
claim still stands (a `/predict` claim lives twice the window, a batch writer's the job timeout and at least the
window after its write, see `hold_written`), so the chunk's own claim fails for those tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis

CLAIM_KEY = "lensguard:claim:{project}:{version}:{task}"
PREDICT_OWNER = "predict"  # the owner name of every /predict request
PREDICT_CLAIM_SECONDS = 1200  # long enough for Label Studio to store what /predict answered
PLAN_TRUST_SECONDS = PREDICT_CLAIM_SECONDS // 2  # how long a planning read of Label Studio stands in for a re-read

# KEYS: claim keys; ARGV: owner, ttl. Returns 1/0 per key: held by this owner (new or earlier), or by another.
_CLAIM_SCRIPT = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('set', key, ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
    held[i] = 1
  elseif redis.call('get', key) == ARGV[1] then
    if ARGV[1] ~= 'predict' then redis.call('expire', key, tonumber(ARGV[2])) end
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""


def _key(project: int | str, version: str, task: int) -> str:
    digest = hashlib.sha1(version.encode()).hexdigest()[:16]
    return CLAIM_KEY.format(project=project, version=digest, task=task)


def claim(
    connection: redis.Redis, project: int | str, version: str, tasks: Sequence[int], owner: str, ttl_seconds: int
) -> set[int]:
    """The tasks among `tasks` that `owner` may write a `version` prediction for."""
    if not tasks:
        return set()
    keys = [_key(project, version, task) for task in tasks]
    held = connection.eval(_CLAIM_SCRIPT, len(keys), *keys, owner, ttl_seconds)
    return {task for task, mine in zip(tasks, held, strict=True) if mine}


def hold_written(connection: redis.Redis, project: int | str, version: str, tasks: Sequence[int]) -> None:
    """Keep the claims of tasks just written for at least `PLAN_TRUST_SECONDS` more (EXPIRE GT: never shortened),
    so a chunk trusting an older planning read cannot claim them again."""
    with connection.pipeline(transaction=False) as pipe:
        for task in tasks:
            pipe.expire(_key(project, version, task), PLAN_TRUST_SECONDS, gt=True)
        pipe.execute()
