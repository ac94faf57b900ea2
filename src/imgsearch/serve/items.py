"""The service's item routes: read one item, "more like this", and the operator's writes.

* ``GET /items/{id}`` - an item's metadata (title, brand, price, currency, its page ``url``, other views);
* ``GET /items/{id}/similar`` - the items nearest to a stored item (``k``, ``offset``, ``group``, ``filter``
  like ``/search``); the page's cards call it on click;
* ``POST /items`` (multipart: ``file`` + ``metadata``, a JSON object with at least ``item_id`` and
  ``label``), ``PATCH /items/{id}`` (``metadata`` and/or a new ``file``), ``DELETE /items/{id}``: change the
  live catalogue (:mod:`imgsearch.retrieval.live`) without a rebuild.

Writes need ``Authorization: Bearer <token>`` with the token the operator configured (``write_token`` /
``IMGSEARCH_WRITE_TOKEN``): a missing or wrong token is ``401``; with no token configured, writes are off
(``403``). Reads stay open. Uploaded photos pass the same size, type and decode limits as searches and are
kept under ``<index>/live/images/``, named by their sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, File, Form, Header, Query, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from imgsearch.serve.upload import sniff_image_type

log = logging.getLogger(__name__)

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
               "image/bmp": ".bmp"}  # fmt: skip
#: The most values a facet lists (the most frequent ones): a select box, not the catalogue.
MAX_FACET_VALUES = 200
#: Columns a write may not set: the id is the route's, paths are the server's.
_PROTECTED = {"image_path", "vector_id"}


def _cell(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def item_record(row: pd.Series, image_url: str) -> dict[str, Any]:
    """An item as the API shows it: every catalogue column but the server's file path."""
    out = {k: _cell(v) for k, v in row.items() if k not in ("image_path",)}
    out["image_url"] = image_url
    return out


def parse_metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, detail=f"metadata must be a JSON object: {exc}") from None
    if not isinstance(values, dict) or not all(
        isinstance(v, str | int | float | type(None)) for v in values.values()
    ):
        raise HTTPException(400, detail="metadata must be a JSON object of strings and numbers")
    bad = _PROTECTED & set(values)
    if bad:
        raise HTTPException(400, detail=f"metadata may not set {sorted(bad)}")
    return {str(k): ("" if v is None else v) for k, v in values.items()}


def install_item_routes(
    app: FastAPI,
    searcher: Any,
    *,
    write_token: str | None,
    decode: Callable[[bytes, str], Any],
    max_upload_bytes: int,
    search_options: Callable[..., dict[str, Any]],
    respond: Callable[..., Any],
    image_url: Callable[[str], str],
    uploads_dir: Path | None,
) -> None:
    """Add the item routes to ``app`` (see the module docstring).

    Args:
        decode: ``(bytes, filename) -> PIL image`` with the service's upload limits.
        search_options: turns the query parameters into Searcher keyword arguments (shared with /search).
        respond: ``(result, k, offset) -> SearchResponse``.
        uploads_dir: where uploaded photos are kept (``None``: the searcher cannot take writes).
    """
    can_write = all(
        hasattr(searcher, m) for m in ("add_items", "remove_items", "update_metadata", "make_live")
    )

    def authorise(authorization: str | None) -> None:
        if not write_token:
            raise HTTPException(
                403, detail="catalogue writes are disabled on this server (no write_token set)"
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), write_token):
            raise HTTPException(
                401, detail="a catalogue write needs Authorization: Bearer <the operator's token>",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        if not can_write or uploads_dir is None:
            raise HTTPException(501, detail="this searcher cannot change its catalogue")

    def lookup(item_id: str) -> pd.Series:
        if not hasattr(searcher, "item"):  # a searcher with a fixed item table
            match = searcher.items[searcher.items["item_id"].astype(str) == item_id]
            if not len(match):
                raise HTTPException(404, detail="no catalogue item with this id")
            return match.iloc[0]
        try:
            return searcher.item(item_id)
        except KeyError:
            raise HTTPException(404, detail="no catalogue item with this id") from None

    def store_photo(data: bytes, filename: str) -> tuple[str, Any]:
        image = decode(data, filename)  # every upload limit first: size, type, pixels, decode slots
        searcher.make_live()  # the live folder exists before a photo is put in it
        kind = sniff_image_type(data[:12]) or "image/jpeg"
        assert uploads_dir is not None
        uploads_dir.mkdir(parents=True, exist_ok=True)
        path = uploads_dir / (hashlib.sha256(data).hexdigest()[:32] + _EXTENSIONS.get(kind, ".img"))
        if not path.exists():
            from imgsearch.utils.atomic import atomic_write_bytes

            atomic_write_bytes(path, data)
        return str(path), image

    async def read_file(file: UploadFile) -> bytes:
        return await file.read(max_upload_bytes + 1)

    def store_error(exc: Exception) -> HTTPException:
        from imgsearch.retrieval.store import ItemStoreError

        if isinstance(exc, ItemStoreError):
            status = 409 if "already in the catalogue" in str(exc) else 404 if "not in" in str(exc) else 400
            return HTTPException(status, detail=str(exc))
        return HTTPException(400, detail=str(exc))

    protected = {401: {"description": "missing or wrong token"}, 403: {"description": "writes disabled"}}

    @app.get("/items/{item_id:path}/similar", summary="More like this: items nearest to a stored item")
    async def similar(
        item_id: str,
        k: Annotated[int, Query(ge=1, le=100)] = 12,
        offset: Annotated[int, Query(ge=0, le=1000)] = 0,
        group: bool = False,
        filter: Annotated[
            list[str] | None, Query(description="column=value, column=a|b, price=10:50")
        ] = None,
    ) -> Any:
        options = search_options(filter, group)
        lookup(item_id)

        def run() -> Any:
            return searcher.similar(item_id, k=offset + k + 1, **options)

        try:
            return respond(await run_in_threadpool(run), k, offset)
        except ValueError as exc:  # a filter that cannot apply to its column
            raise HTTPException(400, detail=str(exc)) from None

    @app.post("/items", status_code=201, responses=protected, summary="Add an item (operator)")
    async def add_item(
        file: Annotated[UploadFile, File(description="the item's photo")],
        metadata: Annotated[str, Form(description='JSON: {"item_id": ..., "label": ..., "title": ...}')],
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        authorise(authorization)
        values = parse_metadata(metadata)
        if not str(values.get("item_id", "")).strip() or not str(values.get("label", "")).strip():
            raise HTTPException(400, detail="metadata needs a non-empty item_id and label")
        data = await read_file(file)

        def run() -> dict[str, Any]:
            path, image = store_photo(data, file.filename or "upload")
            rows = pd.DataFrame([{**values, "image_path": path}])
            try:
                return searcher.add_items(rows, [image])
            except ValueError as exc:
                raise store_error(exc) from exc

        report = await run_in_threadpool(run)
        item_id = str(values["item_id"])
        log.info("added item %r through the API", item_id)
        record = item_record(lookup(item_id), image_url(item_id))
        return JSONResponse({"added": report["added"], "item": record}, status_code=201)

    @app.patch("/items/{item_id:path}", responses=protected, summary="Change an item (operator)")
    async def patch_item(
        item_id: str,
        file: Annotated[UploadFile | None, File(description="a new photo (re-embedded)")] = None,
        metadata: Annotated[str | None, Form(description="JSON object of the columns to change")] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        authorise(authorization)
        values = parse_metadata(metadata)
        if "item_id" in values and str(values["item_id"]) != item_id:
            raise HTTPException(400, detail="an item's id cannot change; remove it and add it again")
        values.pop("item_id", None)
        if file is None and not values:
            raise HTTPException(400, detail="nothing to change: give metadata and/or a file")
        current = lookup(item_id)
        data = await read_file(file) if file is not None else None

        def run() -> None:
            try:
                if data is None:
                    searcher.update_metadata(item_id, values)
                    return
                path, image = store_photo(data, file.filename or "upload")
                keep = {k: _cell(v) for k, v in current.items() if k not in _PROTECTED}
                row = {**keep, **values, "item_id": item_id, "image_path": path}
                searcher.add_items(pd.DataFrame([row]), [image], mode="update")
            except ValueError as exc:
                raise store_error(exc) from exc

        await run_in_threadpool(run)
        return {"updated": 1, "item": item_record(lookup(item_id), image_url(item_id))}

    @app.delete("/items/{item_id:path}", responses=protected, summary="Remove an item (operator)")
    async def delete_item(
        item_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        authorise(authorization)
        lookup(item_id)

        def run() -> int:
            try:
                return searcher.remove_items([item_id])
            except ValueError as exc:
                raise store_error(exc) from exc

        return {"removed": await run_in_threadpool(run)}

    @app.get("/facets", summary="Values to filter on: categories, brands, price range")
    async def facets() -> dict[str, Any]:
        items = searcher.catalogue() if hasattr(searcher, "catalogue") else searcher.items

        def values(column: str) -> list[str]:
            if column not in items.columns:
                return []
            counts = items[column].astype(str).str.strip()
            counts = counts[counts != ""].value_counts()
            return sorted(counts.index[:MAX_FACET_VALUES].tolist(), key=str.casefold)

        prices = pd.to_numeric(items.get("price", pd.Series([], dtype=float)), errors="coerce").dropna()
        price = [float(prices.min()), float(prices.max())] if len(prices) else None
        from imgsearch.serve.words import colour_facet

        return {"label": values("label"), "brand": values("brand"), "price": price,
                "colour": colour_facet(searcher, items)}  # fmt: skip

    @app.get("/items/{item_id:path}", summary="A catalogue item's metadata")
    async def get_item(item_id: str) -> dict[str, Any]:
        return item_record(lookup(item_id), image_url(item_id))


def uploads_dir_of(searcher: Any) -> Path | None:
    index_dir = getattr(searcher, "index_dir", None)
    return None if index_dir is None else Path(index_dir) / "live" / "images"
