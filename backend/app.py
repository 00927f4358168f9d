"""The FastAPI app: Label Studio's ML-backend protocol (/health, /setup, /predict, /webhook, /metrics)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.auth import require_basic_auth
from backend.protocol import (
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    WebhookEvent,
    project_id,
)
from backend.webhooks import handle_webhook
from labelstudio.label_config import LabelConfigError, parse_soiling_config
from serving.components import Serving, build_serving
from settings import Settings, get_settings
from training.queue import JobQueue, QueueUnavailable

log = logging.getLogger(__name__)


def _service(request: Request):
    serving: Serving = request.app.state.serving
    if serving.service is None:
        raise HTTPException(status_code=503, detail=f"model not loaded: {serving.error}")
    return serving.service


def _queue(request: Request) -> JobQueue:
    state = request.app.state
    if getattr(state, "job_queue", None) is None:
        settings = state.serving.settings
        state.job_queue = JobQueue(settings.redis_url, settings.job_timeout_seconds, settings.train_retries)
    return state.job_queue


def create_app(settings: Settings | None = None, serving: Serving | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "serving", None) is None:
            app.state.serving = await run_in_threadpool(build_serving, settings or get_settings())
        yield

    app = FastAPI(title="lensguard", version="0.1.0", lifespan=lifespan)
    app.state.serving = serving
    app.state.label_configs = {}  # project id -> labeling config sent by /setup
    protected = [Depends(require_basic_auth)]

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse(
            status_code=422,
            content={"detail": "malformed request: " + "; ".join(problems), "errors": jsonable_encoder(exc.errors())},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {exc.__class__.__name__}"})

    @app.get("/")
    @app.get("/health", response_model=HealthResponse)
    def health(request: Request) -> JSONResponse:
        serving: Serving = request.app.state.serving
        if serving.service is None:
            body = HealthResponse(status="DOWN", error=serving.error, warnings=serving.warnings)
            return JSONResponse(status_code=503, content=body.model_dump())
        scorer = serving.service.pipeline.scorer
        body = HealthResponse(
            status="UP",
            model_version=serving.service.model_version(),
            weights=scorer.clip.weights,
            device=str(scorer.clip.device),
            warnings=serving.warnings,
        )
        return JSONResponse(content=body.model_dump())

    @app.post("/setup", response_model=SetupResponse, dependencies=protected)
    def setup(body: SetupRequest, request: Request) -> SetupResponse:
        service = _service(request)
        if body.label_config:
            try:
                parse_soiling_config(body.label_config)
            except LabelConfigError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
        project = project_id(body.project)
        if body.label_config and project:
            request.app.state.label_configs[project] = body.label_config
        return SetupResponse(model_version=service.model_version(project))

    @app.post("/predict", response_model=PredictResponse, dependencies=protected)
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        service = _service(request)
        project = project_id(body.project)
        label_config = body.label_config or request.app.state.label_configs.get(project or "")
        if not label_config:
            raise HTTPException(status_code=422, detail="no label_config in the request and none from /setup")
        try:
            results = service.predict([t.model_dump() for t in body.tasks], label_config, project)
        except LabelConfigError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return PredictResponse(
            results=results, model_version=results[0]["model_version"] if results else service.model_version(project)
        )

    @app.post("/webhook", dependencies=protected)
    def webhook(event: WebhookEvent, request: Request) -> dict:
        try:
            return handle_webhook(event, _queue(request), request.app.state.serving.settings)
        except QueueUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @app.get("/jobs", dependencies=protected)
    def jobs(request: Request, limit: int = 50) -> dict:
        try:
            return {"jobs": _queue(request).jobs(limit)}
        except QueueUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @app.get("/jobs/{job_id}", dependencies=protected)
    def job(job_id: str, request: Request) -> dict:
        try:
            found = _queue(request).job(job_id)
        except QueueUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        if found is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return found

    @app.get("/metrics", dependencies=protected)
    def metrics(request: Request) -> dict:
        serving: Serving = request.app.state.serving
        if serving.service is None:
            return {"model_loaded": False}
        service = serving.service
        stats = service.pipeline.stats
        return {
            "model_loaded": True,
            "model_version": service.model_version(),
            **service.counters,
            **{f"predict_seconds_{stage}": round(value, 3) for stage, value in service.seconds.items()},
            "images_seen": stats.images,
            "embedding_cache_hits": stats.cache_hits,
            "images_encoded": stats.encoded,
            "images_failed": stats.failed,
        }

    return app
