"""Prometheus metrics of the API: requests, latency, submissions and queue depth.

Each app gets its own registry, so several apps in one process (tests) never clash.
Rejections show as ``yoloq_api_requests_total{status="429"}`` (and 403, 422, 503).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class QueueDepthCollector(Collector):
    """Images waiting per model, read from Redis at scrape time."""

    def __init__(self, queued_images: Callable[[], dict[str, int]]) -> None:
        self.queued_images = queued_images

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "yoloq_queue_images", "Images submitted and not yet done, by model.", labels=["model"]
        )
        for model, count in sorted(self.queued_images().items()):
            family.add_metric([model], count)
        yield family


class ApiMetrics:
    def __init__(self, queued_images: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "yoloq_api_requests_total",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "yoloq_api_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "yoloq_api_jobs_submitted_total", "Jobs accepted.", ["model"], registry=self.registry
        )
        self.images_submitted = Counter(
            "yoloq_api_images_submitted_total",
            "Images in accepted jobs.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(QueueDepthCollector(queued_images))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path, which
    would make one time series per job id)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
