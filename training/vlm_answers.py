"""The VLM's parsed verdicts per project, kept in Redis by VLM jobs and read by retraining for pseudo-labels."""

from __future__ import annotations

import json

import redis

from models.vlm import VlmAnswer
from training.queue import VLM_ANSWERS_KEY


def record_answers(connection: redis.Redis, project: int, answers: dict[int, VlmAnswer], version: str) -> None:
    parsed = {
        str(task): json.dumps({"verdict": str(a.verdict), "confidence": a.confidence, "version": version})
        for task, a in answers.items()
        if a.parsed and task is not None
    }
    if parsed:
        connection.hset(VLM_ANSWERS_KEY.format(project=project), mapping=parsed)


def recorded_answers(connection: redis.Redis, project: int) -> dict[int, dict]:
    """task id -> {"verdict", "confidence", "version"} of the VLM's parsed answers for the project."""
    raw = connection.hgetall(VLM_ANSWERS_KEY.format(project=project))
    return {int(task): json.loads(value) for task, value in raw.items()}
