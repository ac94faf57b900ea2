"""Operations for ``imgsearch-serve``: Prometheus ``/metrics``, ``/healthz``, ``/readyz``, an access log.

Each app has its own registry (tests build many apps in one process; the global one would refuse the
second set of metric names).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class ObserveRequests:
    """Pure ASGI middleware: count each HTTP request by route and status, time it, write its access-log line.

    Wraps ``send`` to read the status (see :mod:`imgsearch.serve.middleware` for why not
    ``@app.middleware("http")``); the time runs to the last byte of the body sent.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what a request that raises before its response starts answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            # the route template, not the raw path: item ids must not make one time series each; the
            # router writes the matched route into this same scope dict
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(path=path, status=str(status)).inc()
            self.metrics.latency.labels(path=path).observe(elapsed)
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.1f ms',
                client[0] if client else "-", scope.get("method", "-"), scope.get("path", ""), status,
                elapsed * 1000.0,
            )  # fmt: skip


def install_operations(
    app: FastAPI, *, ready: Callable[[], bool], queue_depth: Callable[[], int]
) -> ServeMetrics:
    """Add ``/healthz``, ``/readyz``, ``/metrics`` and the access-log middleware to ``app``."""
    metrics = ServeMetrics()
    metrics.queue_depth.set_function(lambda: float(queue_depth()))

    app.add_middleware(ObserveRequests, metrics=metrics)

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
