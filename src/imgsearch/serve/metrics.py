"""Operations for ``imgsearch-serve``: Prometheus ``/metrics``, ``/healthz``, ``/readyz``, an access log.

Each app has its own registry (tests build many apps in one process; the global one would refuse the
second set of metric names).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

access_log = logging.getLogger("imgsearch.serve.access")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imgsearch_requests",
            "HTTP requests by route and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "imgsearch_request_seconds", "request latency in seconds", ["path"], registry=self.registry
        )
        self.batch_size = Histogram(
            "imgsearch_batch_size", "photos per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge(
            "imgsearch_queue_depth", "photos waiting for a batch", registry=self.registry
        )


def install_operations(
    app: FastAPI, *, ready: Callable[[], bool], queue_depth: Callable[[], int]
) -> ServeMetrics:
    """Add ``/healthz``, ``/readyz``, ``/metrics`` and the access-log middleware to ``app``."""
    metrics = ServeMetrics()
    metrics.queue_depth.set_function(lambda: float(queue_depth()))

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            # the route template, not the raw path: item ids must not make one time series each
            path = getattr(route, "path", None) or "unmatched"
            metrics.requests.labels(path=path, status=str(status)).inc()
            metrics.latency.labels(path=path).observe(elapsed)
            access_log.info(
                '%s "%s %s" %d %.1f ms',
                request.client.host if request.client else "-", request.method, request.url.path, status,
                elapsed * 1000.0,
            )  # fmt: skip

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = bool(ready())
        return JSONResponse({"status": "ready" if ok else "loading"}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
