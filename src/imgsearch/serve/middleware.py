"""Pure ASGI middleware for ``imgsearch-serve``.

Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``) runs each request's app in a task of its own
and streams the response through a memory channel: on the 2-core machine a py-spy profile of 16 concurrent
clients showed the event-loop thread about 60% busy, with those layers a visible share of it. These classes
wrap ``send`` instead, which costs one function call per message.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseHeader:
    """Add one header to every HTTP response (``X-Imgsearch-Worker``: which of workers=N answered)."""

    def __init__(self, app: ASGIApp, *, name: str, value: str) -> None:
        self.app = app
        self.name = name
        self.value = value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(self.name, self.value)
            await send(message)

        await self.app(scope, receive, send_with_header)


class ReloadBetweenRequests:
    """Let the index reloader check for a swapped index before each HTTP request (a few stat calls at most
    once per check interval)."""

    def __init__(self, app: ASGIApp, *, reloader: Any) -> None:
        self.app = app
        self.reloader = reloader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.reloader.maybe_reload()
        await self.app(scope, receive, send)
