"""The service's words, colour and tagging (#15), beside the photo search of :mod:`imgsearch.serve.app`:

* ``GET /search?q=`` - words alone (SQLite FTS5, BM25; ``k``, ``offset``, ``group``, ``filter`` like the photo
  search);
* ``POST /search`` takes ``q`` (words fused with the photo ranking at ``text_weight``), ``colour_weight``
  (match the photo's colour; refused on an index without a colour part) and ``colour`` ("this, in colour c");
  :func:`word_options` turns them into ``Searcher.search`` keywords;
* ``POST /tag`` - a photo's category and each attribute head's value, confidence and low-confidence flag;
  ``409`` when the model has no attribute heads;
* ``GET /facets`` gains ``colour`` (:func:`colour_facet`): whether the index has a colour part (the page shows
  "match colour" only then) and the colours "in colour c" knows.

Bad words, a colour weight on an index without a colour part and an unknown colour are the request's fault:
``400`` with the reason (an unknown colour's answer lists the known ones, also as ``known``), never a 500.
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from imgsearch.retrieval.colour import NoColourPartError
from imgsearch.retrieval.text import TextQueryError, UnknownColourError, match_expression

log = logging.getLogger(__name__)

#: the most colours ``/facets`` lists for "in colour c"
MAX_COLOURS = 200
#: the largest colour weight the API takes: far past where the colour part decides the whole ranking
MAX_COLOUR_WEIGHT = 100.0


class TagValue(BaseModel):
    value: str = Field(description="the head's most likely class")
    confidence: float = Field(description="its probability (softmax)")
    low_confidence: bool = Field(description="true under the threshold: a guess, not a tag")


class TagResponse(BaseModel):
    tags: dict[str, TagValue] = Field(
        description="'label' (the category), then each attribute head the model was trained with"
    )
    min_confidence: float = Field(description="the threshold of low_confidence")


def word_options(
    searcher: Any, q: str | None, text_weight: float, colour_weight: float, colour: str | None
) -> dict[str, Any]:
    """``Searcher.search`` keywords for the words and colour of a photo search; only those set (a searcher
    without words takes the others). Checked here, before the upload is decoded: bad words, a weight on an
    index without a colour part and an unknown colour raise what :func:`install_word_routes` answers 400."""
    options: dict[str, Any] = {}
    if q is not None:
        if not hasattr(searcher, "search_text"):
            raise HTTPException(501, detail="this searcher has no words search")
        match_expression(q)  # TextQueryError: nothing to search, too long
        options["q"], options["text_weight"] = q, float(text_weight)
    if colour_weight:
        if getattr(searcher, "colour_parts", None) is None:
            from imgsearch.retrieval.hybrid import check_colour_weight

            check_colour_weight(colour_weight, None)  # raises NoColourPartError with the reason
        options["colour_weight"] = float(colour_weight)
    if colour is not None:
        if not hasattr(searcher, "in_colour_filter"):
            raise TextQueryError("this searcher cannot search 'in colour c'")
        searcher.in_colour_filter(colour)  # UnknownColourError, listing the known colours
        options["colour"] = colour
    return options


def colour_facet(searcher: Any, items: pd.DataFrame) -> dict[str, Any]:
    """``{"weight": the index has a colour part, "column": the colour column or null, "values": [...]}``."""
    out: dict[str, Any] = {"weight": getattr(searcher, "colour_parts", None) is not None, "column": None,
                           "values": []}  # fmt: skip
    manifest = getattr(searcher, "manifest", None)
    if not isinstance(manifest, dict):
        return out
    from imgsearch.retrieval.hybrid import colour_column

    try:
        column = colour_column(items, manifest)
    except TextQueryError:
        return out  # no colour column: the page offers no "in colour c"
    values = items[column].astype(str).str.strip()
    counts = values[values != ""].value_counts()
    out["column"] = column
    out["values"] = sorted(counts.index[:MAX_COLOURS].tolist(), key=str.casefold)
    return out


def tag_image(searcher: Any, image: Any, min_confidence: float | None = None) -> TagResponse:
    """Tags of one decoded photo from the searcher's model.

    Raises:
        HTTPException: 409 when the model has no attribute heads (or there is no model).
    """
    import torch

    from imgsearch.data.images import to_rgb
    from imgsearch.models.attributes import CATEGORY, tags_from_probs

    module = getattr(searcher, "module", None)
    attributes = dict(getattr(module, "attribute_classes", None) or {})
    if module is None or not attributes or not hasattr(module, "predict_attributes"):
        raise HTTPException(
            409,
            detail="this index's model has no attribute heads, so it cannot tag photos; train it with "
            "model.attributes=[baseColour,gender,...] and rebuild the index",
        )
    threshold = float(module.min_confidence if min_confidence is None else min_confidence)
    batch = searcher.class_transform(to_rgb(image)).unsqueeze(0).to(searcher.device)
    with torch.inference_mode():
        probs = module.predict_attributes(batch)
    from imgsearch.models.colour_probe import probe_colour_probs

    probs = probe_colour_probs(getattr(searcher, "colour_probe", None), probs, [to_rgb(image)])
    classes = {CATEGORY: module.class_names, **attributes}
    (row,) = tags_from_probs(probs, classes, threshold)
    return TagResponse(
        tags={name: TagValue(**tag.as_dict()) for name, tag in row.items()}, min_confidence=threshold
    )


def install_word_routes(
    app: FastAPI,
    searcher: Any,
    *,
    decode: Callable[[bytes, str], Any],
    max_upload_bytes: int,
    search_options: Callable[..., dict[str, Any]],
    respond: Callable[..., Any],
    top_k: int,
    max_k: int,
    bad_upload: dict[int, Any],
) -> None:
    """Add ``GET /search``, ``POST /tag`` and the 400 answers of bad words and colours to ``app``."""

    @app.exception_handler(TextQueryError)
    async def _bad_words(request: Request, exc: TextQueryError) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(exc), "reason": "bad_query"}
        if isinstance(exc, UnknownColourError):
            body.update(reason="unknown_colour", known=exc.known)
        return JSONResponse(body, status_code=400)

    @app.exception_handler(NoColourPartError)
    async def _no_colour(request: Request, exc: NoColourPartError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "no_colour_part"}, status_code=400)

    bad_words = {400: {"description": "words with nothing to search, or over 1000 characters / 32 words"}}

    @app.get("/search", responses=bad_words, summary="Search by words (titles, brands, categories, tags)")
    async def search_words(
        q: Annotated[str, Query(description="words, e.g. navy blue shirts (stemmed: shirts = shirt)")],
        k: Annotated[
            int | None, Query(ge=1, le=max_k, description=f"results to return (default {top_k})")
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1000, description="results to skip ('show more')")] = 0,
        group: Annotated[bool, Query(description="one result per product")] = False,
        filter: Annotated[
            list[str] | None,
            Query(description="metadata filter, repeatable: brand=Acme, label=bags|shoes, price=10:50"),
        ] = None,
    ) -> Any:
        if not hasattr(searcher, "search_text"):
            raise HTTPException(501, detail="this searcher has no words search")
        match_expression(q)  # a bad query is a 400 before any work
        options = search_options(filter, group)
        want = k or top_k

        def run() -> Any:
            return searcher.search_text(q, k=offset + want + 1, **options)

        try:
            result = await run_in_threadpool(run)
        except (TextQueryError, NoColourPartError):
            raise
        except ValueError as exc:  # a filter that cannot apply to its column
            raise HTTPException(400, detail=str(exc)) from None
        return respond(result, want, offset)

    tag_errors = {**bad_upload, 409: {"description": "the model has no attribute heads"}}

    @app.post("/tag", response_model=TagResponse, responses=tag_errors, summary="Tag a photo (attributes)")
    async def tag(
        file: Annotated[UploadFile, File(description="the photo: JPEG, PNG, WebP, GIF or BMP")],
        min_confidence: Annotated[
            float | None,
            Query(ge=0.0, le=1.0, description="low-confidence threshold (default: the model's)"),
        ] = None,
    ) -> TagResponse:
        module = getattr(searcher, "module", None)
        if module is None or not getattr(module, "attribute_classes", None):
            tag_image(searcher, None)  # the 409, before the upload is read
        data = await file.read(max_upload_bytes + 1)

        def run() -> TagResponse:
            return tag_image(searcher, decode(data, file.filename or "upload"), min_confidence)

        return await run_in_threadpool(run)
