"""The FastAPI app: Label Studio's ML-backend protocol (/health, /setup, /predict, /webhook, /metrics)."""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.auth import auth_warnings
from backend.guard import RequestGuard
from backend.metrics import install_metrics, json_counters, render
from backend.protocol import (
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    WebhookEvent,
    WebhookResponse,
    error_responses,
)
from backend.webhooks import handle_webhook
from labelstudio.label_config import LabelConfigError, parse_soiling_config
from serving.components import Serving, build_serving
from settings import Settings, get_settings
from training.claims import PREDICT_CLAIM_SECONDS, PREDICT_OWNER, claim
from training.queue import JobQueue, QueueUnavailable

log = logging.getLogger(__name__)
MAX_JOBS_LISTED = 1000
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")  # what RQ accepts as a job id


class LabelConfigs(OrderedDict):
    """Label configs sent by /setup, per project; the least recently used are dropped past `capacity` configs
    or `max_chars` characters in all."""

    def __init__(self, capacity: int, max_chars: int = 32 * 1024 * 1024):
        super().__init__()
        self.capacity = max(capacity, 1)
        self.max_chars = max_chars

    def get(self, project, default=None):
        if project in self:
            self.move_to_end(project)
            return self[project]
        return default

    def put(self, project: str, label_config: str) -> None:
        self[project] = label_config
        self.move_to_end(project)
        while len(self) > 1 and (len(self) > self.capacity or sum(map(len, self.values())) > self.max_chars):
            self.popitem(last=False)


def _service(request: Request):
    serving: Serving = request.app.state.serving
    if serving.service is None:
        raise HTTPException(status_code=503, detail="model not loaded (see /health)")
    return serving.service


def _queue_unavailable(exc: QueueUnavailable) -> HTTPException:
    log.warning("%s", exc)  # the Redis address stays in the log, not in the answer
    return HTTPException(status_code=503, detail="job queue unavailable")


def _queue(request: Request) -> JobQueue:
    return _state_queue(request.app.state)


def _state_queue(state) -> JobQueue:
    if getattr(state, "job_queue", None) is None:
        settings = state.serving.settings
        state.job_queue = JobQueue(settings.redis_url, settings.job_timeout_seconds, settings.train_retries)
    return state.job_queue


def _claimed_elsewhere(request: Request, project: str | None, version: str, tasks: list[dict]) -> set[int]:
    """Tasks whose `version` prediction another writer claimed (training.claims); without Redis, none."""
    ids = [t["id"] for t in tasks if t.get("id") is not None]
    state = request.app.state
    if not project or not ids or time.monotonic() < getattr(state, "claims_down_until", 0.0):
        return set()
    try:
        mine = claim(_queue(request).connection, project, version, ids, PREDICT_OWNER, PREDICT_CLAIM_SECONDS)
    except redis.RedisError as exc:  # Redis down: /predict keeps working, without the duplicate guard
        log.warning("prediction claims unavailable for a minute: %s", exc)
        state.claims_down_until = time.monotonic() + 60
        return set()
    return set(ids) - mine


def create_app(settings: Settings | None = None, serving: Serving | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "serving", None) is None:
            app.state.serving = await run_in_threadpool(build_serving, settings or get_settings())
        for warning in auth_warnings(app.state.serving.settings):
            log.warning(warning)
        yield

    app = FastAPI(title="lensguard", version="0.1.0", lifespan=lifespan)
    app.add_middleware(RequestGuard)  # credentials and body size, before any body is read
    app.state.serving = serving
    app.state.label_configs = LabelConfigs(
        (serving.settings if serving else settings or get_settings()).max_cached_label_configs
    )
    registry = install_metrics(app, lambda: _state_queue(app.state))

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
        return JSONResponse(
            status_code=422,
            content={"detail": "malformed request: " + "; ".join(problems)[:2000], "errors": errors[:50]},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path[:200].encode("unicode_escape"))
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    def health(request: Request) -> JSONResponse:
        serving: Serving = request.app.state.serving
        warnings = serving.warnings + auth_warnings(serving.settings)
        if serving.service is None:
            body = HealthResponse(status="DOWN", error=serving.error, warnings=warnings)
            return JSONResponse(status_code=503, content=body.model_dump())
        scorer = serving.service.pipeline.scorer
        body = HealthResponse(
            status="UP",
            model_version=serving.service.model_version(),
            weights=scorer.clip.weights,
            device=str(scorer.clip.device),
            runtime={**scorer.runtime.to_json(), "batch_size": scorer.batch_size},
            warnings=warnings,
        )
        return JSONResponse(content=body.model_dump())

    @app.post("/setup", response_model=SetupResponse, responses=error_responses(400, 401, 413, 422, 503))
    def setup(body: SetupRequest, request: Request) -> SetupResponse:
        service = _service(request)
        if body.label_config:
            try:
                parse_soiling_config(body.label_config)
            except LabelConfigError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
        version = service.model_version(body.project)
        if body.label_config and body.project:
            request.app.state.label_configs.put(body.project, body.label_config)
        return SetupResponse(model_version=version)

    @app.post("/predict", response_model=PredictResponse, responses=error_responses(400, 401, 413, 422, 503))
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        service = _service(request)
        settings = request.app.state.serving.settings
        if len(body.tasks) > settings.max_tasks_per_request:
            raise HTTPException(
                status_code=413,
                detail=f"{len(body.tasks)} tasks in one request: at most {settings.max_tasks_per_request} "
                "(LENSGUARD_MAX_TASKS_PER_REQUEST)",
            )
        label_config = body.label_config or request.app.state.label_configs.get(body.project or "")
        if not label_config:
            raise HTTPException(status_code=422, detail="no label_config in the request and none from /setup")
        tasks = [t.model_dump() for t in body.tasks]
        version = service.model_version(body.project)
        taken = _claimed_elsewhere(request, body.project, version, tasks)
        try:
            predicted = iter(
                service.predict(
                    [t for t in tasks if t.get("id") not in taken],
                    label_config,
                    body.project,
                    time_budget=settings.predict_time_budget,
                    chunk_size=settings.predict_chunk_size,
                )
            )
        except LabelConfigError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        # an empty list: Label Studio stores nothing for a task that a batch writer is predicting already
        results = [[] if task.get("id") in taken else next(predicted) for task in tasks]
        return PredictResponse(results=results, model_version=version)

    @app.post("/webhook", response_model=WebhookResponse, responses=error_responses(400, 401, 413, 422, 503))
    def webhook(event: WebhookEvent, request: Request) -> dict:
        try:
            return handle_webhook(event, _queue(request), request.app.state.serving.settings)
        except QueueUnavailable as exc:
            raise _queue_unavailable(exc) from exc

    @app.get("/jobs", responses=error_responses(401, 422, 503))
    def jobs(request: Request, limit: int = Query(50, ge=1, le=MAX_JOBS_LISTED)) -> dict:
        try:
            return {"jobs": _queue(request).jobs(limit)}
        except QueueUnavailable as exc:
            raise _queue_unavailable(exc) from exc

    @app.get("/jobs/{job_id}", responses=error_responses(401, 404, 422, 503))
    def job(request: Request, job_id: str = Path(max_length=200)) -> dict:
        if not JOB_ID.fullmatch(job_id):
            raise HTTPException(status_code=404, detail="no such job")
        try:
            found = _queue(request).job(job_id)
        except QueueUnavailable as exc:
            raise _queue_unavailable(exc) from exc
        if found is None:
            raise HTTPException(status_code=404, detail="no such job")
        return found

    @app.get("/metrics", responses=error_responses(401, 422))
    def metrics(request: Request, format: str = "prometheus") -> Response:
        """Prometheus text format; `?format=json` gives the serving counters as JSON."""
        if format == "json":
            return JSONResponse(json_counters(request.app.state.serving))
        if format != "prometheus":
            raise HTTPException(status_code=422, detail="format: 'prometheus' (default) or 'json'")
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    return app
