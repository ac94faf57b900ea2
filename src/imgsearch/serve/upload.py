"""Checks on an uploaded photo, in the order they are cheapest: size, type by content, decoding.

Every refusal is an :class:`UploadRejected` with an HTTP status and a message that names the
upload and the reason, so that a bad upload is always a 4xx and never a 500:

============================================  ======  =====================
upload                                        status  ``reason``
============================================  ======  =====================
request body or file over the size limit      413     ``too_big``
0 bytes                                       400     ``empty``
not JPEG/PNG/WebP/GIF/BMP by its first bytes  415     ``unsupported_type``
known type, but cannot be decoded             422     the decoder's reason
more pixels than the service's pixel budget   422     ``too_large``
every decode slot busy (``serve/limits.py``)  503     ``busy`` + ``Retry-After``
============================================  ======  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgsearch.data.images import ImageDecodeError, load_image_bytes
from imgsearch.serve.limits import DecodeBusy, DecodeLimits, DecodeSlots

#: Accepted upload types. The first bytes decide, not the client's Content-Type header or file
#: name, which a browser guesses from the extension and an attacker sets at will.
ACCEPTED_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")

#: Room for the multipart envelope (boundaries, part headers) around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass
class UploadRejected(Exception):
    """A refused upload: rendered as ``{"detail": message, "reason": reason}`` with ``status_code``."""

    status_code: int
    message: str
    reason: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of an accepted image format from a file's first 12 bytes, else ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:2] == b"BM":
        return "image/bmp"
    return None


def format_size(n_bytes: int) -> str:
    """``10 MB`` / ``512 KB`` / ``80 bytes``: limits in messages people read."""
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.3g} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.3g} KB"
    return f"{n_bytes} bytes"


def too_big_message(max_bytes: int) -> str:
    return f"the upload is larger than the {format_size(max_bytes)} limit; send a smaller photo"


def decode_upload(
    data: bytes,
    filename: str,
    *,
    max_bytes: int,
    limits: DecodeLimits | None = None,
    slots: DecodeSlots | None = None,
) -> Image.Image:
    """Check an uploaded file and decode it with the project's guarded decoder.

    Args:
        data: the file's bytes.
        filename: the client's name for it (only used in messages).
        max_bytes: the largest file accepted.
        limits: pixel budget and reduced-size decoding (none: only the module-wide bomb guard).
        slots: decode slots to take one of, so that decodes at once are bounded.

    Raises:
        UploadRejected: see the module docstring for status codes and reasons.
    """
    name = filename or "upload"
    if len(data) > max_bytes:
        raise UploadRejected(413, f"{name!r}: {too_big_message(max_bytes)}", "too_big")
    if not data:
        raise UploadRejected(400, f"{name!r} is empty (0 bytes)", "empty")
    if sniff_image_type(data[:12]) is None:
        accepted = ", ".join(t.removeprefix("image/").upper() for t in ACCEPTED_TYPES)
        raise UploadRejected(
            415, f"{name!r} is not a supported image: its content is none of {accepted}", "unsupported_type"
        )
    try:
        kwargs = {} if limits is None else {"max_pixels": limits.max_pixels, "max_side": limits.max_side}
        if slots is None:
            return load_image_bytes(data, name, **kwargs)
        return slots.run(load_image_bytes, data, name, **kwargs)
    except DecodeBusy as exc:
        raise UploadRejected(
            503, f"{name!r}: {exc}", "busy", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    except ImageDecodeError as exc:
        detail = f" ({exc.detail})" if exc.detail else ""
        raise UploadRejected(422, f"{name!r} could not be decoded: {exc.reason}{detail}", exc.reason) from exc


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` on ``paths`` with a JSON 413.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a body sent
    without one (chunked) is counted as it arrives and refused as soon as it passes the limit, so
    an oversized upload is never spooled whole. Starlette's own ``RequestBodyLimitMiddleware``
    answers with a plain-text "Content Too Large" that names neither the limit nor the fix.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, paths: tuple[str, ...], message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path or not any(path == p or path.startswith(p + "/") for p in self.paths):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self.message, "reason": "too_big"}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException raised while the framework reads the form reaches its
                    # exception handlers (a plain exception would become a generic 400).
                    raise HTTPException(413, detail=self.message)
            return message

        await self.app(scope, limited_receive, send)
