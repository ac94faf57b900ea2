// The search page: a photo, words, or both in; the predicted category and a grid of products out.
// Plain DOM code, no framework and no build step; every string from the server goes through
// textContent, never innerHTML, so catalogue titles cannot inject markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const fileInput = $("file-input");
  const dropzone = $("dropzone");
  const preview = $("preview");
  const dropHint = $("drop-hint");
  const kInput = $("k-input");
  const changeButton = $("change-photo");
  const message = $("message");
  const grid = $("result-grid");
  const emptyState = $("empty-state");
  const template = $("card-template");

  const showMore = $("show-more");
  const banner = $("similar-banner");

  let currentFile = null;
  let previewUrl = null;
  let requestSeq = 0; // answers to superseded requests are dropped
  // what the grid shows: a photo's results, or "more like" a stored item; offset = results shown so far
  let view = { kind: "photo", itemId: null, title: "", offset: 0 };
  // from /facets: the colour column "in colour c" filters on (null: none) and whether colour can be matched
  let colourColumn = null;
  let canMatchColour = false;

  const wordsInput = $("words-input");
  const words = () => wordsInput.value.trim();
  const colourChoice = () => $("filter-colour").value;
  const colourWeight = () => (canMatchColour ? parseFloat($("colour-weight").value) || 0 : 0);

  function filterParams() {
    const params = new URLSearchParams();
    const label = $("filter-label").value;
    const brand = $("filter-brand").value;
    const low = $("price-min").value.trim();
    const high = $("price-max").value.trim();
    if (label) params.append("filter", `label=${label}`);
    if (brand) params.append("filter", `brand=${brand}`);
    if (low || high) params.append("filter", `price=${low}:${high}`);
    if ($("group-input").checked) params.append("group", "true");
    return params;
  }

  function safeLink(url) {
    // only the shop's web pages: never javascript: or data: links from a catalogue cell
    try {
      const u = new URL(url, window.location.href);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  function showMessage(text, kind = "info") {
    message.textContent = text;
    message.dataset.kind = kind;
    message.hidden = !text;
  }

  function formatPrice(price, currency) {
    if (price === null || price === undefined) return "";
    if (currency) {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(price);
      } catch (_) {
        // not an ISO 4217 code: show it beside the number
        return `${price.toFixed(2)} ${currency}`;
      }
    }
    return price.toFixed(2);
  }

  function setPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.hidden = false;
    dropHint.hidden = true;
    dropzone.classList.add("has-image");
    changeButton.hidden = false;
  }

  function renderPrediction(category, probability, confident) {
    const box = $("prediction");
    if (category === null || category === undefined) {
      box.hidden = true;
      return;
    }
    // under the server's min_confidence the category is a guess, and the page says so
    const unsure = confident === false;
    box.classList.toggle("unsure", unsure);
    $("category").textContent = unsure ? `not sure, perhaps ${category}` : category;
    const pct = probability === null || probability === undefined ? null : probability * 100;
    $("probability").textContent = pct === null ? "" : `${pct.toFixed(1)}% confident`;
    $("probability-bar").style.width = pct === null ? "0" : `${Math.max(2, pct)}%`;
    box.hidden = false;
  }

  function renderResults(results, append = false) {
    if (!append) grid.replaceChildren();
    for (const hit of results) {
      const card = template.content.firstElementChild.cloneNode(true);
      card.dataset.itemId = hit.item_id;
      const img = card.querySelector("img");
      img.src = hit.image_url;
      img.alt = hit.title || hit.item_id;
      card.querySelector(".rank").textContent = `#${hit.rank}`;
      card.querySelector(".brand-name").textContent = hit.brand;
      card.querySelector(".title").textContent = hit.title || hit.item_id;
      card.querySelector(".price").textContent = formatPrice(hit.price, hit.currency);
      card.querySelector(".score").textContent = `score ${hit.score.toFixed(3)}`;
      card.querySelector(".label-chip").textContent = hit.label;
      const link = hit.url ? safeLink(hit.url) : null;
      if (link) {
        const a = card.querySelector(".shop-link");
        a.href = link;
        a.hidden = false;
      }
      card.querySelector(".thumb").addEventListener("click", () => similar(hit.item_id, hit.title || hit.item_id));
      grid.append(card);
    }
    const shown = grid.children.length;
    emptyState.hidden = shown > 0;
    if (!shown) emptyState.querySelector("p").textContent = "No similar products found.";
    $("results-count").textContent = shown ? `${shown} shown, most similar first` : "";
  }

  async function request(url, options) {
    const response = await fetch(url, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(typeof data.detail === "string" ? data.detail : `request failed (${response.status})`);
    }
    return data;
  }

  function pageSize() {
    const k = Math.min(100, Math.max(1, parseInt(kInput.value, 10) || 12));
    kInput.value = k;
    return k;
  }

  async function run(fetchPage, append) {
    const seq = ++requestSeq;
    document.body.classList.add("busy");
    showMessage(append ? "Loading more…" : "Searching…");
    try {
      const data = await fetchPage();
      if (seq !== requestSeq) return;
      if (!append) renderPrediction(data.category, data.probability, data.confident);
      renderResults(data.results, append);
      view.offset = data.offset + data.results.length;
      showMore.hidden = !data.has_more;
      showMessage("");
    } catch (err) {
      if (seq !== requestSeq) return;
      if (!append) {
        renderPrediction(null, null);
        grid.replaceChildren();
        emptyState.hidden = false;
        emptyState.querySelector("p").textContent = "No results.";
        $("results-count").textContent = "";
      }
      showMore.hidden = true;
      showMessage(err.message || String(err), "error");
    } finally {
      if (seq === requestSeq) document.body.classList.remove("busy");
    }
  }

  function photoPage(offset) {
    const params = filterParams();
    params.set("k", pageSize());
    params.set("offset", offset);
    // words with the photo are fused with its ranking; a colour is "this, in colour c"
    if (words()) params.set("q", words());
    if (colourChoice()) params.set("colour", colourChoice());
    if (colourWeight() > 0) params.set("colour_weight", colourWeight());
    const body = new FormData();
    body.append("file", currentFile, currentFile.name || "photo");
    return () => request(`search?${params}`, { method: "POST", body });
  }

  function wordsPage(offset) {
    const params = filterParams();
    params.set("q", words());
    params.set("k", pageSize());
    params.set("offset", offset);
    // without a photo there is no "this" to colour: the colour is a plain filter on its column
    if (colourChoice() && colourColumn) params.append("filter", `${colourColumn}=${colourChoice()}`);
    return () => request(`search?${params}`);
  }

  function queryPage(offset) {
    return currentFile ? photoPage(offset) : wordsPage(offset);
  }

  function similarPage(itemId, offset) {
    const params = filterParams();
    params.set("k", pageSize());
    params.set("offset", offset);
    if (colourChoice() && colourColumn) params.append("filter", `${colourColumn}=${colourChoice()}`);
    return () => request(`items/${encodeURIComponent(itemId)}/similar?${params}`);
  }

  // "more like this": a card's click searches with that item's stored vector
  function similar(itemId, title) {
    view = { kind: "similar", itemId, title, offset: 0 };
    $("similar-text").textContent = `More like “${title}”`;
    banner.hidden = false;
    $("back-to-photo").hidden = !currentFile && !words();
    window.scrollTo({ top: 0, behavior: "smooth" });
    run(similarPage(itemId, 0), false);
  }

  function refresh() {
    if (view.kind === "similar") {
      view.offset = 0;
      run(similarPage(view.itemId, 0), false);
    } else {
      search();
    }
  }

  function search() {
    if (!currentFile && !words()) return;
    view = { kind: "photo", itemId: null, title: "", offset: 0 };
    banner.hidden = true;
    $("results-title").textContent = currentFile ? "Similar products" : "Matching products";
    run(queryPage(0), false);
  }

  function useFile(file) {
    if (!file) return;
    currentFile = file;
    setPreview(file);
    search();
  }

  fileInput.addEventListener("change", () => {
    useFile(fileInput.files[0]);
    fileInput.value = ""; // choosing the same file again must fire "change" again
  });
  changeButton.addEventListener("click", () => fileInput.click());
  kInput.addEventListener("change", refresh);
  for (const id of ["filter-label", "filter-brand", "price-min", "price-max", "group-input"]) {
    $(id).addEventListener("change", refresh);
  }
  showMore.addEventListener("click", () => {
    const page = view.kind === "similar" ? similarPage(view.itemId, view.offset) : queryPage(view.offset);
    run(page, true);
  });
  $("back-to-photo").addEventListener("click", search);
  $("words-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("filter-colour").addEventListener("change", refresh);
  $("colour-weight").addEventListener("input", () => {
    const w = colourWeight();
    $("colour-weight-value").textContent = w > 0 ? w.toFixed(1) : "off";
  });
  // the weight re-ranks a photo's results; "more like this" and words alone have no query colour to match
  $("colour-weight").addEventListener("change", () => {
    if (view.kind === "photo" && currentFile) search();
  });

  function fillSelect(id, values) {
    const select = $(id);
    for (const value of values) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.append(option);
    }
    select.disabled = values.length === 0;
  }

  fetch("facets")
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`facets ${r.status}`))))
    .then((f) => {
      fillSelect("filter-label", f.label || []);
      fillSelect("filter-brand", f.brand || []);
      const colour = f.colour || {};
      colourColumn = colour.column || null;
      canMatchColour = colour.weight === true;
      $("colour-match").hidden = !canMatchColour; // shown only when the index has a colour part
      if (colourColumn && (colour.values || []).length) {
        fillSelect("filter-colour", colour.values);
        for (const el of document.querySelectorAll(".colour-choice")) el.hidden = false;
      }
    })
    .catch(() => {
      $("filters").hidden = true;
    });

  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    useFile(event.dataTransfer.files[0]);
  });
  // A photo dropped next to the drop zone should not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  fetch("health")
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`health ${r.status}`))))
    .then((h) => {
      // shoppers see the catalogue, not which model serves it (/health says that to operators)
      $("index-info").textContent = `${h.index_size.toLocaleString()} products`;
      if (h.max_upload_bytes) $("max-size").textContent = `${Math.round(h.max_upload_bytes / 1048576)} MB`;
      if (h.top_k) kInput.value = h.top_k;
      $("index-info").dataset.state = "ok";
    })
    .catch(() => {
      $("index-info").textContent = "service unavailable";
      $("index-info").dataset.state = "error";
    });
})();
