"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema (schemathesis, in process): valid,
malformed, oversized and hostile bodies, parameters and headers, each sent with and without credentials.
No answer may be a 5xx or carry a secret, no log line may carry one or report an unhandled error, and /health
keeps answering. Bounded examples keep it to a minute or two on two cores; LENSGUARD_FUZZ_EXAMPLES raises it."""

from __future__ import annotations

import logging
import os
from collections import Counter

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from backend.app import create_app
from serving.components import build_serving
from tests.services import redis_url
from tests.unit.test_app import API_TOKEN, AUTH, TOKEN, settings_for

REDIS_URL = redis_url(15)
EXAMPLES = int(os.environ.get("LENSGUARD_FUZZ_EXAMPLES", "60"))
BASIC_PASS = "fuzz-basic-pass-4567"
SECRETS = (TOKEN, API_TOKEN, BASIC_PASS, "redis://")
STATUSES: Counter[str] = Counter()


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


LOG = LogCapture()


def _app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = settings_for(
        "http://127.0.0.1:9",  # Label Studio is not running: relative image URLs are per-task errors
        root,
        redis_url=REDIS_URL,
        basic_auth_user="labelstudio",
        basic_auth_pass=BASIC_PASS,
        max_tasks_per_request=16,
        image_fetch_timeout=0.5,
        predict_time_budget=2.0,
        train_debounce_seconds=3600,
    )
    return create_app(settings, build_serving(settings))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    logging.getLogger().addHandler(LOG)
    with TestClient(_app(tmp_path_factory)) as test_client:
        yield test_client
    logging.getLogger().removeHandler(LOG)
    redis.Redis.from_url(REDIS_URL).flushdb()


def _check(response, path: str, with_credentials: bool) -> None:
    STATUSES[f"{response.status_code}"] += 1
    assert response.status_code < 500, f"{response.status_code} on {path}: {response.text[:300]}"
    if not with_credentials and path != "/health":
        assert response.status_code == 401, f"{path} answered {response.status_code} without credentials"
    for secret in SECRETS:
        assert secret not in response.text


def _operations(client):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", client.app, headers=AUTH)
    return [result.ok() for result in loaded.get_all_operations()]


def _fuzzer(operation, mode: GenerationMode):
    """A hypothesis test sending each generated request with credentials, without, and with wrong ones."""
    path = operation.path

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case):
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        _check(case.call(headers={**headers, **AUTH}), path, True)
        _check(case.call(headers=headers), path, False)
        _check(case.call(headers={**headers, "Authorization": "Bearer " + "x" * 40}), path, False)

    return fuzz


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_endpoint_answers_5xx_or_leaks_a_secret(client, mode):
    """Each operation of the schema: schema-valid (positive) or schema-violating (negative) requests."""
    operations = _operations(client)
    assert {op.path for op in operations} >= {"/health", "/setup", "/predict", "/webhook", "/jobs", "/metrics"}
    for operation in operations:
        parameters = len(operation.body) + len(operation.query) + len(operation.path_parameters)
        if mode == GenerationMode.NEGATIVE and not parameters:
            continue  # nothing in /health or /metrics to violate
        _fuzzer(operation, mode)()


HOSTILE = [
    ("post", "/predict", {"content": b"\x00" * 1000, "headers": {"Content-Type": "application/json"}}),
    ("post", "/predict", {"content": b"[" * 100_000, "headers": {"Content-Type": "application/json"}}),
    ("post", "/predict", {"content": b'{"tasks": ' + b"[" * 5000, "headers": {"Content-Type": "application/json"}}),
    ("post", "/predict", {"json": {"tasks": [{"data": {"image": "/data/upload/1/x.jpg\r\nforged"}}] * 3}}),
    ("post", "/predict", {"json": {"tasks": [{"data": {"image": "http://169.254.169.254/"}}], "label_config": "<"}}),
    ("post", "/webhook", {"content": b'{"action": "ANNOTATION_CREATED", "project": {"id": 1e999}}'}),
    ("post", "/webhook", {"json": {"action": "ANNOTATION_CREATED", "project": {"id": 2**64}}}),
    ("post", "/webhook", {"json": {"action": "A" * 10_000}}),
    ("post", "/setup", {"json": {"project": "1", "schema": "<View>" * 50_000}}),
    ("get", "/jobs/" + "%FF" * 300, {}),
    ("get", "/jobs?limit=1e9", {}),
    ("get", "/metrics", {"headers": {"Authorization": "Basic " + "=" * 5000}}),
]


@pytest.mark.parametrize(("method", "path", "options"), HOSTILE)
def test_hand_written_hostile_requests_are_4xx(client, method, path, options):
    headers = {**AUTH, **options.pop("headers", {})}
    response = getattr(client, method)(path, headers=headers, **options)
    _check(response, path, True)
    assert 400 <= response.status_code < 500 or path.startswith("/predict")


def test_health_still_answers_and_no_log_line_leaks_or_crashes(client):
    assert client.get("/health").status_code == 200
    text = "\n".join(LOG.lines)
    assert "unhandled error" not in text
    for secret in SECRETS[:3]:
        assert secret not in text
    tried = sum(STATUSES.values())
    print(f"\nfuzz: {tried} requests, statuses {dict(sorted(STATUSES.items()))}")
    assert tried >= 100
