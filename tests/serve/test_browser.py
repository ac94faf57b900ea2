"""End to end in a real headless browser: Debian's chromium, driven by Playwright, against uvicorn.

Playwright's own browser download is never used (no network at test time): the test launches the
system chromium that ``make test`` installs with apt.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from imgsearch.data.images import load_image
from imgsearch.serve.app import create_app, manifest_facts

from .conftest import live_server

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
K = 8


def chromium_executable() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")


@pytest.mark.slow
def test_upload_in_browser_shows_category_and_result_grid(demo_searcher, repo_root, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    executable = chromium_executable()
    model, facts = manifest_facts(demo_searcher.manifest)
    app = create_app(demo_searcher, top_k=K, model_name=model, details=facts)
    items = demo_searcher.items
    query = items[items["view"] == "model"].iloc[0]
    # what the library answers for this photo is what the page must show
    (expected,) = demo_searcher.search([load_image(query["image_path"])], k=K)

    with live_server(app) as base_url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requested: set[tuple[str, str]] = set()
            page.on("request", lambda req: requested.add(urlsplit(req.url)[:2]))
            console_errors: list[str] = []
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))

            page.goto(base_url + "/")
            sync_api.expect(page.locator("#index-info")).to_have_text(f"{len(items)} products")
            assert model and model not in page.locator("body").inner_text()  # no model names to shoppers
            page.set_input_files("#file-input", query["image_path"])

            cards = page.locator("#result-grid .card")
            sync_api.expect(cards).to_have_count(K, timeout=60_000)
            sync_api.expect(page.locator("#preview")).to_be_visible()
            sync_api.expect(page.locator("#category")).to_have_text(expected.category)
            shown_pct = page.locator("#probability").inner_text()
            assert shown_pct == f"{expected.probability * 100:.1f}% confident"
            titles = cards.locator(".title").all_text_contents()
            assert titles == [h.title for h in expected.hits]
            assert all(t.strip() for t in titles)
            assert cards.locator(".rank").all_inner_texts() == [f"#{i}" for i in range(1, K + 1)]
            assert cards.locator(".brand-name").all_text_contents() == [h.brand for h in expected.hits]
            # every result image really loaded from the service
            page.wait_for_function(
                "() => [...document.querySelectorAll('#result-grid img')]"
                ".every(img => img.complete && img.naturalWidth > 0)",
                timeout=30_000,
            )
            # nothing but this service over the network (blob: is the local preview of the photo)
            network = {(scheme, host) for scheme, host in requested if scheme not in ("blob", "data")}
            assert network == {tuple(urlsplit(base_url)[:2])}, requested
            assert console_errors == []

            shot = page.screenshot(full_page=True, path=str(tmp_path / "serve.png"))
            # the README's picture is refreshed on request only, so a test run leaves the work tree clean
            target = repo_root / "outputs" / "screenshots" / "serve.png"
            if os.environ.get("IMGSEARCH_UPDATE_DOCS_SCREENSHOT"):
                target = repo_root / "docs" / "img" / "serve.png"
            save_docs_screenshot(shot, target)

            # a bad upload shows the service's message instead of results
            bad = tmp_path / "notes.jpg"
            bad.write_text("not a photo at all\n")
            page.set_input_files("#file-input", str(bad))
            sync_api.expect(page.locator("#message")).to_contain_text("is not a supported image")
            sync_api.expect(cards).to_have_count(0)
            sync_api.expect(page.locator("#prediction")).to_be_hidden()

            # dropping the photo on the drop zone searches again
            photo_b64 = base64.b64encode(Path(query["image_path"]).read_bytes()).decode()
            transfer = page.evaluate_handle(
                """(b64) => {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
                    return dt;
                }""",
                photo_b64,
            )
            page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
            sync_api.expect(cards).to_have_count(K, timeout=60_000)
            sync_api.expect(page.locator("#message")).to_be_hidden()
            assert cards.locator(".title").all_text_contents() == titles
        finally:
            browser.close()


def save_docs_screenshot(png: bytes, path: Path, *, max_bytes: int = 300_000) -> None:
    """Write the page screenshot for the README, as a palette PNG so it stays small."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    buf = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buf, format="PNG", optimize=True
    )
    data = buf.getvalue()
    assert len(data) < max_bytes, f"screenshot is {len(data)} bytes, more than {max_bytes}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.slow
def test_filters_more_like_this_and_show_more_in_browser(demo_searcher):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    executable = chromium_executable()
    app = create_app(demo_searcher, top_k=K)
    items = demo_searcher.items
    query = items[items["view"] == "model"].iloc[0]
    other_label = sorted(set(items["label"].astype(str)) - {str(query["label"])})[0]

    with live_server(app) as base_url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base_url + "/")
            # the category list comes from /facets
            page.wait_for_function("() => document.querySelectorAll('#filter-label option').length > 1")
            page.set_input_files("#file-input", query["image_path"])
            cards = page.locator("#result-grid .card")
            sync_api.expect(cards).to_have_count(K, timeout=60_000)

            # "show more" appends the next page, numbered on from the first
            sync_api.expect(page.locator("#show-more")).to_be_visible()
            page.click("#show-more")
            sync_api.expect(cards).to_have_count(2 * K, timeout=60_000)
            assert cards.locator(".rank").all_inner_texts() == [f"#{i}" for i in range(1, 2 * K + 1)]

            # "more like this" on the first card: the banner names it and the grid is its neighbours
            first = cards.first
            first_id = first.get_attribute("data-item-id")
            first.locator(".thumb").click()
            sync_api.expect(page.locator("#similar-banner")).to_be_visible()
            page.wait_for_function(
                "(id) => { const c = [...document.querySelectorAll('#result-grid .card')];"
                " return c.length > 0 && c.every(e => e.dataset.itemId !== id); }",
                arg=first_id,
                timeout=60_000,
            )
            similar = demo_searcher.similar(first_id, k=K)
            shown_ids = cards.evaluate_all("cs => cs.map(c => c.dataset.itemId)")
            assert shown_ids == [h.item_id for h in similar.hits]
            page.click("#back-to-photo")
            sync_api.expect(page.locator("#similar-banner")).to_be_hidden()
            sync_api.expect(cards).to_have_count(K, timeout=60_000)
            sync_api.expect(page.locator("#show-more")).to_be_visible()

            # a category filter: every card is of that category, and the library agrees on which ones
            page.select_option("#filter-label", other_label)
            page.wait_for_function(
                "(label) => { const c = [...document.querySelectorAll('#result-grid .label-chip')];"
                " return c.length > 0 && c.every(e => e.textContent === label); }",
                arg=other_label,
                timeout=60_000,
            )
            (expected,) = demo_searcher.search(
                [load_image(query["image_path"])], k=K, filters={"label": other_label}
            )
            assert cards.locator(".title").all_text_contents() == [h.title for h in expected.hits]

        finally:
            browser.close()


@pytest.mark.slow
def test_words_colour_and_both_in_browser(tmp_path_factory):
    """The words box alone, a photo with words, "match colour" and "in colour c" show what the library
    answers, on an index with a colour part (tests/colour_shop.py)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    executable = chromium_executable()
    from colour_shop import build_colour_shop
    from imgsearch.retrieval.search import Searcher

    shop = build_colour_shop(tmp_path_factory.mktemp("browser_shop"))
    searcher = Searcher.from_index_dir(shop / "index")
    app = create_app(searcher, top_k=K)
    photo = shop / "bags-red-0.png"
    image = load_image(photo)

    def library(**options) -> list[str]:
        # the page asks for one more than it shows (has_more), and FAISS orders tied scores by k: ask the same
        return [h.item_id for h in searcher.search([image], k=K + 1, **options)[0].hits][:K]

    def shown(page) -> list[str]:
        return page.locator("#result-grid .card").evaluate_all("cs => cs.map(c => c.dataset.itemId)")

    def wait_for(page, ids: list[str]) -> None:
        page.wait_for_function(
            "(ids) => JSON.stringify([...document.querySelectorAll('#result-grid .card')]"
            ".map(c => c.dataset.itemId)) === JSON.stringify(ids)",
            arg=ids,
            timeout=20_000,
        )

    with live_server(app) as base_url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "/")
            # the index has a colour part and a colour column: both controls are offered
            sync_api.expect(page.locator("#colour-match")).to_be_visible()
            sync_api.expect(page.locator("#filter-colour")).to_be_visible()
            assert page.locator("#filter-colour option").all_text_contents() == ["any", "Blue", "Red"]

            # words alone: the page shows what Searcher.search_text returns, in its order
            page.fill("#words-input", "red bags")
            page.press("#words-input", "Enter")
            words = [h.item_id for h in searcher.search_text("red bags", k=K + 1).hits][:K]
            assert {f"bags-red-{b}" for b in range(4)} <= set(words[:4])
            wait_for(page, words)
            sync_api.expect(page.locator("#prediction")).to_be_hidden()  # no photo, no category

            # the photo with the words still in the box: both, fused
            page.set_input_files("#file-input", str(photo))
            both = library(q="red bags")
            wait_for(page, both)

            # the photo alone, then "match colour" at its strongest: the library's colour-weighted ranking
            page.fill("#words-input", "")
            page.press("#words-input", "Enter")
            plain = library()
            wait_for(page, plain)
            page.locator("#colour-weight").fill("4")
            weighted = library(colour_weight=4.0)
            assert weighted != plain and all("-red-" in i for i in weighted)
            wait_for(page, weighted)
            sync_api.expect(page.locator("#colour-weight-value")).to_have_text("4.0")

            # "in colour c": the photo's kind of product in the chosen colour
            page.select_option("#filter-colour", "Blue")
            in_blue = [
                h.item_id for h in searcher.search([image], k=K, colour="Blue", colour_weight=4.0)[0].hits
            ]
            assert in_blue and all(i.startswith("bags-blue-") for i in in_blue)
            wait_for(page, in_blue)
            assert shown(page) == in_blue and errors == []
        finally:
            browser.close()
