"""/metrics in Prometheus text format: HTTP requests and latency per endpoint (a middleware), and, read at scrape
time, the serving counters (predictions, errors by cause, images) and the job queue (depth, job outcomes and
durations per kind, as recorded by the workers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from serving.components import Serving
from training.job_metrics import DURATION_BUCKETS
from training.queue import JobQueue, QueueUnavailable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServingCollector(Collector):
    def __init__(self, serving: Callable[[], Serving]):
        self.serving = serving

    def collect(self) -> Iterator[Metric]:
        serving = self.serving()
        service = serving.service if serving else None
        yield GaugeMetricFamily("lensguard_model_loaded", "1 when a model serves predictions", value=int(bool(service)))
        if service is None:
            return
        info = GaugeMetricFamily("lensguard_model_info", "The served model", labels=["model_version", "weights"])
        info.add_metric([service.model_version(), service.pipeline.scorer.clip.weights], 1)
        yield info
        counters = service.counters
        yield CounterMetricFamily(
            "lensguard_tasks_predicted", "Tasks given a prediction", value=counters["tasks_predicted"]
        )
        yield CounterMetricFamily("lensguard_predict_requests", "Batches predicted", value=counters["predict_requests"])
        errors = CounterMetricFamily("lensguard_prediction_errors", "Tasks left without a prediction", labels=["cause"])
        for cause, count in sorted(service.errors.items()):
            errors.add_metric([cause], count)
        yield errors
        seconds = CounterMetricFamily("lensguard_predict_seconds", "Time spent predicting, by stage", labels=["stage"])
        for stage, value in sorted(service.seconds.items()):
            seconds.add_metric([stage], value)
        yield seconds
        stats = service.pipeline.stats
        for name, value, text in (
            ("images_seen", stats.images, "Images given to the model"),
            ("embedding_cache_hits", stats.cache_hits, "Images whose embedding came from the cache"),
            ("images_encoded", stats.encoded, "Images run through the image encoder"),
            ("images_failed", stats.failed, "Images that could not be decoded or encoded"),
        ):
            yield CounterMetricFamily(f"lensguard_{name}", text, value=value)


class QueueCollector(Collector):
    def __init__(self, queue: Callable[[], JobQueue]):
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        try:
            queue = self.queue()
            depth, stats = queue.depth(), queue.job_stats()
        except QueueUnavailable:
            yield GaugeMetricFamily("lensguard_queue_up", "1 when the job queue (Redis) answers", value=0)
            return
        yield GaugeMetricFamily("lensguard_queue_up", "1 when the job queue (Redis) answers", value=1)
        jobs = GaugeMetricFamily("lensguard_queue_jobs", "Jobs in the queue, by state", labels=["state"])
        for state, count in depth.items():
            jobs.add_metric([state], count)
        yield jobs
        durations = HistogramMetricFamily(
            "lensguard_job_duration_seconds",
            "Job run time by kind and outcome (the result's status, or failed)",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), entry in sorted(stats.items()):
            buckets = [(floatToGoString(bound), entry.buckets.get(bound, 0)) for bound in DURATION_BUCKETS]
            durations.add_metric([kind, outcome], [*buckets, ("+Inf", entry.count)], entry.seconds)
        yield durations


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "lensguard_http_requests", "HTTP requests", ["method", "endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "lensguard_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, request: Request, status: int, seconds: float) -> None:
        route = request.scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"  # the route's template: /jobs/{job_id}
        self.requests.labels(request.method, endpoint, str(status)).inc()
        self.latency.labels(request.method, endpoint).observe(seconds)


def install_metrics(app: FastAPI, queue: Callable[[], JobQueue]) -> CollectorRegistry:
    """A registry of the app's own (several apps in one process do not share counters) and the request
    middleware; returns the registry for the /metrics route."""
    registry = CollectorRegistry(auto_describe=False)
    http = HttpMetrics(registry)
    registry.register(ServingCollector(lambda: app.state.serving))
    registry.register(QueueCollector(queue))

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            http.observe(request, status, time.perf_counter() - started)

    return registry


def json_counters(serving: Serving) -> dict:
    if serving.service is None:
        return {"model_loaded": False}
    service = serving.service
    stats = service.pipeline.stats
    return {
        "model_loaded": True,
        "model_version": service.model_version(),
        **service.counters,
        **{f"predict_seconds_{stage}": round(value, 3) for stage, value in service.seconds.items()},
        "prediction_errors": dict(service.errors),
        **(service.vlm.counters if service.vlm else {}),
        "images_seen": stats.images,
        "embedding_cache_hits": stats.cache_hits,
        "images_encoded": stats.encoded,
        "images_failed": stats.failed,
    }


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
