"""One prediction per task and version, whichever writers run at once.

Every path that makes Label Studio store a prediction (pre-annotation and re-scoring chunks, `/predict` for
Label Studio's retrieve action) first claims (project, version, task) in Redis with SET NX. Only the claim's
owner writes; a chunk retried after its worker died owns its claims again (its owner is its job id), and
re-checks Label Studio before writing, so what the dead attempt wrote is not written twice. `/predict` answers
an empty list for a task a batch writer holds; its own claims stop batch writers but not a later `/predict`
(Label Studio itself skips tasks that already hold the version, and direct callers get an answer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis

CLAIM_KEY = "lensguard:claim:{project}:{version}:{task}"
PREDICT_OWNER = "predict"  # the owner name of every /predict request
PREDICT_CLAIM_SECONDS = 600  # long enough for Label Studio to store what /predict answered

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
