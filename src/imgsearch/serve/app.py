"""``imgsearch-serve``: search a built index by photo, from a browser or over a JSON API.

Routes:

* ``GET /``: the single search page (static files under ``serve/static``, no build step, no CDN);
* ``POST /search``: multipart upload of one photo (field ``file``), optional ``?k=``; answers the
  predicted category with its probability and the top-k catalogue items;
* ``GET /search?q=`` (words), ``POST /tag`` (a photo's attributes): :mod:`imgsearch.serve.words`;
* ``GET /items/{item_id}/image``: a catalogue item's image, looked up by id in the index's items
  table (the request never names a file);
* ``GET /health``: status, index size, model;
* ``GET /healthz`` (alive), ``GET /readyz`` (model and index loaded), ``GET /metrics`` (Prometheus);
* ``/openapi.json`` and ``/docs``: the framework's API description.

The model and the index are loaded once, before the server starts (:func:`main`), and shared by
all requests through :func:`create_app`, which tests call with a searcher they build themselves.
"""

import asyncio
import json
import logging
import math
import mimetypes
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote

import pandas as pd
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import imgsearch
from imgsearch.data.schema import optional_price
from imgsearch.retrieval.filters import FilterError, filter_mask, parse_filters
from imgsearch.serve.batching import BatchConfig, MicroBatcher, QueueFull
from imgsearch.serve.items import install_item_routes, uploads_dir_of
from imgsearch.serve.limits import DecodeLimits, DecodeSlots
from imgsearch.serve.metrics import install_operations
from imgsearch.serve.middleware import ReloadBetweenRequests, ResponseHeader
from imgsearch.serve.upload import (
    MULTIPART_OVERHEAD_BYTES,
    BodySizeLimit,
    UploadRejected,
    decode_upload,
    too_big_message,
)
from imgsearch.serve.words import MAX_COLOUR_WEIGHT, install_word_routes, word_options

#: most neighbours a query may be expanded with (alpha-QE helps with 1-3; more only blurs the query)
MAX_QE = 50

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")

#: Upper bound of the ``k`` query parameter, whatever the index size: a page of results, not a dump.
MAX_K = 100

#: The page loads only its own files, so a CDN asset slipped into the page would be blocked.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class SearcherLike(Protocol):
    """What the app needs from :class:`imgsearch.retrieval.search.Searcher`."""

    items: pd.DataFrame

    def search(
        self, images: Sequence[Image.Image], k: int = 10, *, restrict_to_predicted: bool = False
    ) -> list[Any]: ...


class Hit(BaseModel):
    rank: int = Field(description="1 for the most similar item")
    item_id: str
    product_id: str
    title: str
    brand: str
    price: float | None = Field(description="null when the catalogue has no price")
    currency: str = Field(description='"" when unknown')
    label: str = Field(description="the item's category in the catalogue")
    score: float = Field(description="similarity (inner product) or distance (L2), as the index measures it")
    image_url: str = Field(description="the item's image, served by GET /items/{item_id}/image")
    url: str = Field("", description="the product's page in the shop, when the catalogue has one")
    other_views: list[str] = Field(
        default_factory=list, description="with ?group=true: the product's other matching photos (item ids)"
    )


class SearchResponse(BaseModel):
    category: str | None = Field(description="predicted category of the photo")
    probability: float | None = Field(description="the model's probability for that category")
    confident: bool | None = Field(
        None, description="false when the probability is under the server's min_confidence: a guess"
    )
    results: list[Hit]
    offset: int = Field(0, description="results skipped (?offset=, for 'show more')")
    has_more: bool = Field(False, description="more results follow this page")


class Health(BaseModel):
    status: str
    index_size: int
    model: str
    top_k: int = Field(description="results per search when ?k= is not given")
    max_upload_bytes: int
    qe: int = Field(0, description="query expansion a search gets when ?qe= is not given (0 = off)")
    qe_alpha: float = 3.0
    details: dict[str, Any] = Field(default_factory=dict, description="more from the index manifest")


class ErrorResponse(BaseModel):
    detail: str
    reason: str | None = None


def _str(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _default_expansion(searcher: Any, qe: int, qe_alpha: float) -> tuple[int, float]:
    """The server's query expansion, checked once at start-up: a wrong one would fail every request."""
    if isinstance(qe, bool) or not isinstance(qe, int) or not 0 <= qe <= MAX_QE:
        raise ValueError(f"qe must be an integer within 0..{MAX_QE} (0 = off), got {qe!r}")
    if isinstance(qe_alpha, bool) or not isinstance(qe_alpha, int | float) or not 0 <= qe_alpha <= 100:
        raise ValueError(f"qe_alpha must be a number within 0..100, got {qe_alpha!r}")
    if qe:
        check = getattr(searcher, "check_expansion", None)
        if check is None:
            raise ValueError("qe > 0, but this searcher cannot expand queries")
        check(qe, qe_alpha)
    return qe, float(qe_alpha)


def item_image_url(item_id: str) -> str:
    """Relative URL of an item's image (works behind a path prefix); ids are percent-encoded whole."""
    return f"items/{quote(item_id, safe='')}/image"


def create_app(
    searcher: SearcherLike,
    *,
    max_upload_bytes: int = 10 * 1024 * 1024,
    top_k: int = 12,
    restrict_to_predicted: bool = False,
    model_name: str = "",
    details: Mapping[str, Any] | None = None,
    decode_limits: DecodeLimits | None = None,
    image_roots: Sequence[str | Path] | None = None,
    batching: BatchConfig | None = None,
    write_token: str | None = None,
    min_confidence: float = 0.0,
    reloader: Any | None = None,
    qe: int = 0,
    qe_alpha: float = 3.0,
) -> FastAPI:
    """The FastAPI app over an already loaded searcher.

    Args:
        searcher: model + index (``Searcher.from_index_dir``), or any object with ``search`` and
            ``items`` like it.
        max_upload_bytes: largest photo accepted (413 above it).
        top_k: results per search when the request does not say (``?k=``, 1..``MAX_K``).
        restrict_to_predicted: search only the predicted category (classify-then-search).
        model_name: shown by ``/health``.
        details: extra facts for ``/health`` (e.g. from the index manifest).
        decode_limits: pixel budget, reduced-size decoding and decodes at once
            (:mod:`imgsearch.serve.limits`; default :class:`DecodeLimits`).
        image_roots: stream item images only from under these folders (the index's recorded
            image roots); ``None`` trusts the item table's paths.
        batching: share forward passes between concurrent requests (:mod:`imgsearch.serve.batching`);
            ``None``: each request searches alone, one at a time.
        write_token: the bearer token catalogue writes need (:mod:`imgsearch.serve.items`); ``None``:
            writes are off.
        min_confidence: a predicted category below this probability is answered ``confident: false``
            (the page says it is unsure instead of stating a wrong category).
        reloader: a :class:`imgsearch.serve.reload.Reloader` (``searcher`` then its
            :class:`~imgsearch.serve.reload.ReloadingSearcher`): each request first lets it check whether the
            index directory was replaced; the reload runs in the background, requests never wait for it.
        qe, qe_alpha: the query expansion a request gets when it does not ask (``?qe=``; 0 = off), e.g. the
            setting chosen on the catalogue's validation split (``imgsearch-eval qe=``).
    """
    if not 1 <= top_k <= MAX_K:
        raise ValueError(f"top_k must be within 1..{MAX_K}, got {top_k}")
    if max_upload_bytes <= 0:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    default_qe, default_qe_alpha = _default_expansion(searcher, qe, qe_alpha)
    items = searcher.items
    duplicated = items["item_id"][items["item_id"].duplicated()]
    if len(duplicated):
        raise ValueError(
            f"the index's item_id must be unique; duplicates e.g. {duplicated.iloc[:3].tolist()}"
        )
    # The only map from a request to a file: ids the index holds -> their catalogue paths. A live searcher
    # looks them up in its current item table (items come and go); any other in the table it was given.
    static_paths: dict[str, str] = dict(
        zip(items["item_id"].astype(str), items["image_path"].astype(str), strict=True)
    )

    def image_path_of(item_id: str) -> str | None:
        if hasattr(searcher, "item"):
            try:
                return str(searcher.item(item_id)["image_path"])
            except KeyError:
                return None
        return static_paths.get(item_id)

    # the item table's currency for searchers whose hits do not carry it
    currencies: dict[str, str] = (
        dict(zip(items["item_id"].astype(str), items["currency"].map(_str), strict=True))
        if "currency" in items.columns and not hasattr(searcher, "item")
        else {}
    )
    uploads = uploads_dir_of(searcher)
    # Torch and FAISS each use all cores per call; queued requests would only fight over them.
    search_lock = threading.Lock()
    too_big = too_big_message(max_upload_bytes)
    limits = decode_limits or DecodeLimits()
    slots = DecodeSlots(limits)
    roots = None if image_roots is None else [Path(r).resolve() for r in image_roots]
    if roots is not None and uploads is not None:
        roots.append(uploads.resolve())  # photos added through POST /items
    batcher, decode_pool = _batching_parts(searcher, batching, restrict_to_predicted)

    app = FastAPI(
        title="imgsearch",
        summary="Search a product catalogue by photo.",
        description="Upload a product photo; get its predicted category and the most similar products.",
        version=imgsearch.__version__,
    )
    app.state.decode_slots = slots  # read by tests and operators: in_use, peak, refused
    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        paths=("/search", "/items", "/tag"),  # uploads: searches, tagging and the operator's item writes
        message=too_big,
    )
    metrics = install_operations(
        app,
        ready=lambda: searcher is not None and len(searcher.items) > 0,
        queue_depth=lambda: batcher.depth() if batcher else 0,
    )
    if batcher is not None:
        batcher.on_batch = metrics.batch_size.observe
    app.state.batcher = batcher
    app.state.reloader = reloader
    if reloader is not None:
        app.add_middleware(ReloadBetweenRequests, reloader=reloader)

    @app.exception_handler(UploadRejected)
    async def _upload_rejected(request: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message, "reason": exc.reason}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(413)
    async def _too_large(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "reason": "too_big"}, status_code=413)

    def decode(data: bytes, filename: str) -> Image.Image:
        return decode_upload(data, filename, max_bytes=max_upload_bytes, limits=limits, slots=slots)

    def decode_and_search(data: bytes, filename: str, k: int, options: dict[str, Any]) -> Any:
        image = decode(data, filename)
        with search_lock:
            (result,) = searcher.search([image], k=k, restrict_to_predicted=restrict_to_predicted, **options)
        return result

    def search_options(filters: Sequence[str] | None, group: bool) -> dict[str, Any]:
        """Query parameters -> Searcher keyword arguments; only those set, so any searcher takes them."""
        options: dict[str, Any] = {}
        if filters:
            try:
                options["filters"] = parse_filters(filters)
                # checked here, not deep in a batch: a bad column is the request's error (400), not a 500
                filter_mask(searcher.items.iloc[:0], options["filters"])
            except FilterError as exc:
                raise HTTPException(400, detail=str(exc)) from None
        if group:
            options["group_by_product"] = True
        return options

    def to_response(result: Any, k: int | None = None, offset: int = 0) -> SearchResponse:
        shown = list(result.hits)[offset : None if k is None else offset + k]
        hits = [
            Hit(
                rank=int(hit.rank),
                item_id=str(hit.item_id),
                product_id=_str(hit.product_id),
                title=_str(hit.title),
                brand=_str(hit.brand),
                price=optional_price(hit.price),
                currency=_str(getattr(hit, "currency", "")) or currencies.get(str(hit.item_id), ""),
                label=_str(hit.label),
                score=float(hit.score),
                image_url=item_image_url(str(hit.item_id)),
                url=_str(getattr(hit, "url", "")),
                other_views=list(getattr(hit, "other_views", ()) or ()),
            )
            for hit in shown
        ]
        probability = None if result.probability is None else float(result.probability)
        confident = None if probability is None else probability >= min_confidence
        return SearchResponse(
            category=result.category, probability=probability, confident=confident, results=hits,
            offset=offset, has_more=k is not None and len(result.hits) > offset + k,
        )  # fmt: skip

    bad_upload = {
        status: {"model": ErrorResponse, "description": text}
        for status, text in (
            (400, "empty upload"),
            (413, f"upload over {too_big}"),
            (415, "not a JPEG/PNG/WebP/GIF/BMP image"),
            (422, "image that cannot be decoded (reason: truncated, not_an_image, too_large, ...)"),
            (503, "every decode slot is busy; retry after the Retry-After header's seconds"),
        )
    }

    @app.post("/search", response_model=SearchResponse, responses=bad_upload, summary="Search by photo")
    async def search(
        file: Annotated[UploadFile, File(description="the photo: JPEG, PNG, WebP, GIF or BMP")],
        k: Annotated[
            int | None, Query(ge=1, le=MAX_K, description=f"results to return (default {top_k})")
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1000, description="results to skip ('show more')")] = 0,
        group: Annotated[bool, Query(description="one result per product (its best photo)")] = False,
        filter: Annotated[
            list[str] | None,
            Query(description="metadata filter, repeatable: brand=Acme, label=bags|shoes, price=10:50"),
        ] = None,
        q: Annotated[
            str | None, Query(description="words fused with the photo ranking (serve/words.py)")
        ] = None,
        text_weight: Annotated[
            float, Query(ge=0.0, le=100.0, description="the words' weight (photo: 1)")
        ] = 1.0,
        colour_weight: Annotated[
            float, Query(ge=0.0, le=MAX_COLOUR_WEIGHT, description="match the photo's colour (0 = off)")
        ] = 0.0,
        colour: Annotated[str | None, Query(description="this kind of product, in this colour")] = None,
        qe: Annotated[
            int | None,
            Query(
                ge=0,
                le=MAX_QE,
                description="alpha-QE: expand with the N nearest items (0 = off; "
                f"default {default_qe}, the server's)",
            ),
        ] = None,
        qe_alpha: Annotated[
            float | None,
            Query(ge=0.0, le=100.0, description=f"alpha-QE's weight exponent (default {default_qe_alpha})"),
        ] = None,
    ) -> SearchResponse:
        options = search_options(filter, group)
        options.update(
            word_options(searcher, q, text_weight, colour_weight, colour)
        )  # 400s before the upload
        qe = default_qe if qe is None else qe
        qe_alpha = default_qe_alpha if qe_alpha is None else qe_alpha
        if qe:
            try:
                check = getattr(searcher, "check_expansion", None)
                if check is None:
                    raise ValueError("this searcher cannot expand queries (qe)")
                check(qe, qe_alpha)
            except ValueError as exc:  # an index that cannot expand: the request's error, not a 500
                raise HTTPException(400, detail=str(exc)) from None
            options.update(qe=int(qe), qe_alpha=float(qe_alpha))
        want = k or top_k
        fetch = offset + want + 1  # one more than shown: whether there is a next page
        # One byte over the limit is enough to know the file is too big.
        data = await file.read(max_upload_bytes + 1)
        # decoding and the model are CPU-bound: off the event loop, so /health and images stay responsive
        if batcher is None:
            try:
                result = await run_in_threadpool(
                    decode_and_search, data, file.filename or "upload", fetch, options
                )
            except FilterError as exc:  # e.g. a range on a column that holds no numbers
                raise HTTPException(400, detail=str(exc)) from None
            return to_response(result, want, offset)

        # the same pixel budget and decode slots as the unbatched path (#13): batching must not unbound memory
        def decode_one() -> Any:
            image = decode_upload(data, file.filename or "upload", max_bytes=max_upload_bytes, limits=limits,
                                  slots=slots)  # fmt: skip
            return batcher.prepare(image)

        image = await asyncio.get_running_loop().run_in_executor(decode_pool, decode_one)
        try:
            result = await batcher.submit(image, fetch, **options)
        except FilterError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        except QueueFull as exc:
            return JSONResponse(
                {"detail": f"the server is busy ({exc}); retry shortly", "reason": "busy"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return to_response(result, want, offset)

    @app.get(
        "/items/{item_id:path}/image",
        response_class=FileResponse,
        responses={404: {"model": ErrorResponse, "description": "no such item, or its image is gone"}},
        summary="A catalogue item's image",
        name="item_image",
    )
    async def item_image(item_id: str) -> FileResponse:
        path = image_path_of(item_id)
        if not path:
            raise HTTPException(404, detail="no catalogue item with this id")
        if roots is not None and not _under_any(Path(path), roots):
            log.warning("refusing the image of item %r: %s is outside the index's image roots", item_id, path)
            raise HTTPException(404, detail="this item's image is missing on the server")
        if not Path(path).is_file():
            log.warning("image of item %r is missing on disk: %s", item_id, path)
            raise HTTPException(404, detail="this item's image is missing on the server")
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/health", response_model=Health, summary="Liveness and what is loaded")
    async def health() -> Health:
        return Health(
            status="ok",
            index_size=len(searcher.items),
            model=model_name,
            top_k=top_k,
            max_upload_bytes=max_upload_bytes,
            qe=default_qe,
            qe_alpha=default_qe_alpha,
            details=dict(details or {}),
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    install_item_routes(
        app, searcher, write_token=write_token, decode=decode, max_upload_bytes=max_upload_bytes,
        search_options=search_options, respond=to_response, image_url=item_image_url, uploads_dir=uploads,
    )  # fmt: skip
    install_word_routes(
        app, searcher, decode=decode, max_upload_bytes=max_upload_bytes, search_options=search_options,
        respond=to_response, top_k=top_k, max_k=MAX_K, bad_upload=bad_upload,
    )  # fmt: skip
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _under_any(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (symlinks and ``..`` resolved) lies inside one of ``roots``."""
    real = path.resolve()
    return any(real.is_relative_to(root) for root in roots)


def _batching_parts(
    searcher: SearcherLike, batching: BatchConfig | None, restrict_to_predicted: bool
) -> tuple[MicroBatcher | None, ThreadPoolExecutor | None]:
    if batching is None:
        return None, None
    batcher = MicroBatcher(searcher, batching, restrict_to_predicted=restrict_to_predicted)
    # bounded: at most decode_threads uploads are decoded at once, off the event loop
    pool = ThreadPoolExecutor(max_workers=batching.decode_threads, thread_name_prefix="imgsearch-decode")
    return batcher, pool


def manifest_facts(manifest: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(model name, facts for /health)`` from an index manifest (``imgsearch.retrieval.index``).

    Only descriptive facts are kept: the manifest's file paths stay on the server.
    """

    def section(name: str) -> Mapping[str, Any]:
        value = manifest.get(name)
        return value if isinstance(value, Mapping) else {}

    model, embedding, index = section("model"), section("embedding"), section("index")
    class_names = model.get("class_names")
    facts = {
        "embedding": embedding.get("kind"),
        "dim": embedding.get("dim"),
        "normalize": embedding.get("normalize"),
        "metric": index.get("metric"),
        "index_factory": index.get("factory"),
        "classes": len(class_names) if isinstance(class_names, list) else None,
        "created": manifest.get("created"),
    }
    return str(model.get("backbone") or ""), {k: v for k, v in facts.items() if v is not None}


def image_roots_of(manifest: Mapping[str, Any]) -> list[str] | None:
    """The image folders an index recorded (``catalogue.image_roots``); ``None`` for an older index."""
    catalogue = manifest.get("catalogue")
    roots = catalogue.get("image_roots") if isinstance(catalogue, Mapping) else None
    if not isinstance(roots, list):
        log.warning("the index manifest records no image roots (an older index); images are not confined")
        return None
    return [str(r) for r in roots]


def read_manifest(index_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read the manifest of %s: %s", index_dir, exc)
        return {}
    return manifest if isinstance(manifest, dict) else {}


def main() -> None:
    """Hydra entry point (``conf/serve.yaml``)."""
    import hydra

    from imgsearch.utils.config import config_dir

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name="serve")
    def _run(cfg: Any) -> None:
        serve(cfg)

    _run()


def serve(cfg: Any) -> None:
    """Load the model and index (once in each of ``workers`` processes), then run uvicorn until stopped."""
    import uvicorn
    from hydra.utils import to_absolute_path
    from omegaconf import OmegaConf

    index_dir = Path(to_absolute_path(str(cfg.index_dir)))
    if not (index_dir / "manifest.json").is_file():
        raise SystemExit(
            f"no index at {index_dir} (manifest.json missing); build one with imgsearch-index, "
            "or run `make demo` and serve outputs/demo/index"
        )
    # resolved once here, where Hydra knows the launch directory: worker processes get plain values
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["index_dir"] = str(index_dir)
    checkpoint = cfg.get("checkpoint")
    plain["checkpoint"] = to_absolute_path(str(checkpoint)) if checkpoint else None
    workers = int(cfg.get("workers") or 1)
    if workers < 1:
        raise SystemExit(f"workers must be >= 1, got {workers}")
    if workers > 1:
        from imgsearch.serve.workers import run_workers

        run_workers(plain, workers)
        return
    options = uvicorn_options(plain)  # a bad http= / loop= fails here, before the model loads
    app = build_app(plain)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), **options)


#: uvicorn's HTTP parsers and event loops (``http=`` / ``loop=`` of the serve config); ``auto`` takes the C
#: ones (httptools, uvloop: dependencies of imgsearch) where installed, else the pure-Python h11 and asyncio
HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def uvicorn_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``uvicorn.Config`` keywords of a serve config: its HTTP parser and event loop, checked.

    Raises:
        SystemExit: an unknown ``http`` / ``loop``, or one named that is not installed (with the fix).
    """
    import importlib.util

    http, loop = str(cfg.get("http") or "auto"), str(cfg.get("loop") or "auto")
    for key, value, known in (("http", http, HTTP_IMPLEMENTATIONS), ("loop", loop, EVENT_LOOPS)):
        if value not in known:
            raise SystemExit(f"{key}={value!r} is not one of {list(known)}")
        if value not in ("auto", "h11", "asyncio") and importlib.util.find_spec(value) is None:
            raise SystemExit(f"{key}={value}: the package {value!r} is not installed (pip install {value}), "
                             f"or use {key}=auto")  # fmt: skip
    # access_log off: imgsearch.serve.access already logs each request, with its latency (one line, not two)
    return {"http": http, "loop": loop, "log_level": "info", "access_log": False}


def load_searcher(cfg: Mapping[str, Any]) -> Any:
    """The searcher of a serve config whose ``index_dir`` / ``checkpoint`` are absolute paths."""
    from imgsearch.models.checkpoint import CheckpointError
    from imgsearch.retrieval.search import Searcher

    index_dir = Path(str(cfg["index_dir"]))
    checkpoint = cfg.get("checkpoint")
    try:
        searcher = Searcher.from_index_dir(
            index_dir,
            device=str(cfg.get("device", "cpu")),
            checkpoint=str(checkpoint) if checkpoint else None,
            allow_other_checkpoint=bool(cfg.get("allow_other_checkpoint", False)),
            runtime=str(cfg.get("runtime", "auto")),
            mmap=bool(cfg.get("mmap", False)),
            runtime_threads=int(cfg["runtime_threads"]) if cfg.get("runtime_threads") else None,
        )
    except (FileNotFoundError, ValueError, CheckpointError) as exc:  # IndexCompatibilityError is a ValueError
        raise SystemExit(f"cannot serve {index_dir}: {exc}") from exc
    if cfg.get("restrict_to_predicted") and getattr(searcher, "module", None) is None:
        raise SystemExit(f"restrict_to_predicted=true needs a classifier, and the index {index_dir} has none")
    return searcher


def build_app(cfg: Mapping[str, Any], searcher: Any | None = None) -> FastAPI:
    """The app of a resolved serve config (one per worker process), over ``searcher`` when one is given
    (loaded before the workers forked, :mod:`imgsearch.serve.workers`), else over a searcher it loads."""
    index_dir = Path(str(cfg["index_dir"]))
    searcher = searcher if searcher is not None else load_searcher(cfg)
    reloader = None
    reload_cfg = cfg.get("reload") or {}
    if reload_cfg.get("enabled", False):
        from imgsearch.serve.reload import Reloader, ReloadingSearcher, index_version

        def load_again() -> Any:
            try:
                return load_searcher(cfg)
            except SystemExit as exc:  # not fatal once serving: the reloader keeps the old index
                raise RuntimeError(str(exc)) from None

        reloader = Reloader(
            load_again,
            lambda: index_version(index_dir),
            searcher,
            check_every_s=float(reload_cfg.get("check_every_s", 1.0)),
        )
        searcher = ReloadingSearcher(reloader)
    manifest = getattr(searcher, "manifest", None) or read_manifest(index_dir)
    model_name, facts = manifest_facts(manifest)
    try:
        app = create_app(
            searcher,
            max_upload_bytes=int(float(cfg.get("max_upload_mb", 10)) * 1024 * 1024),
            top_k=int(cfg.get("top_k", 12)),
            restrict_to_predicted=bool(cfg.get("restrict_to_predicted", False)),
            model_name=model_name,
            details=facts,
            decode_limits=DecodeLimits(**{k: int(v) for k, v in (cfg.get("decode") or {}).items()}),
            image_roots=image_roots_of(manifest),
            batching=_batch_config(cfg),
            write_token=str(cfg.get("write_token") or "") or None,
            min_confidence=float(cfg.get("min_confidence") or 0.0),
            reloader=reloader,
            qe=cfg.get("qe", 0),  # checked by create_app: 1.5 or "2" is refused, not rounded
            qe_alpha=cfg.get("qe_alpha", 3.0),
        )
    except ValueError as exc:  # a setting this index cannot take: say so at start-up, not on each request
        raise SystemExit(f"cannot serve {index_dir}: {exc}") from None
    pid = str(os.getpid())
    # which of workers=N answered (operators, tests)
    app.add_middleware(ResponseHeader, name="X-Imgsearch-Worker", value=pid)

    log.info("serving %d items from %s (pid %s)", len(searcher.items), index_dir, pid)
    return app


def _batch_config(cfg: Any) -> BatchConfig | None:
    section = cfg.get("batching")
    if not section or not section.get("enabled", True):
        return None
    return BatchConfig(
        max_batch=int(section["max_batch"]),
        max_wait_ms=float(section["max_wait_ms"]),
        max_queue=int(section["max_queue"]),
        decode_threads=int(section["decode_threads"]),
        concurrent_batches=int(section.get("concurrent_batches", 1)),  # a config from before it: 1
    )


if __name__ == "__main__":
    main()
