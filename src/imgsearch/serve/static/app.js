// The search page: one photo in, the predicted category and a grid of similar products out.
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

  let currentFile = null;
  let previewUrl = null;
  let requestSeq = 0; // answers to superseded requests are dropped

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

  function renderPrediction(category, probability) {
    const box = $("prediction");
    if (category === null || category === undefined) {
      box.hidden = true;
      return;
    }
    $("category").textContent = category;
    const pct = probability === null || probability === undefined ? null : probability * 100;
    $("probability").textContent = pct === null ? "" : `${pct.toFixed(1)}% confident`;
    $("probability-bar").style.width = pct === null ? "0" : `${Math.max(2, pct)}%`;
    box.hidden = false;
  }

  function renderResults(results) {
    grid.replaceChildren();
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
      grid.append(card);
    }
    emptyState.hidden = results.length > 0;
    if (!results.length) emptyState.querySelector("p").textContent = "No similar products found.";
    $("results-count").textContent = results.length ? `${results.length} shown, most similar first` : "";
  }

  async function search() {
    if (!currentFile) return;
    const seq = ++requestSeq;
    const k = Math.min(100, Math.max(1, parseInt(kInput.value, 10) || 12));
    kInput.value = k;
    const body = new FormData();
    body.append("file", currentFile, currentFile.name || "photo");
    document.body.classList.add("busy");
    showMessage("Searching…");
    try {
      const response = await fetch(`search?k=${k}`, { method: "POST", body });
      const data = await response.json().catch(() => ({}));
      if (seq !== requestSeq) return;
      if (!response.ok) {
        const detail = typeof data.detail === "string" ? data.detail : `request failed (${response.status})`;
        throw new Error(detail);
      }
      renderPrediction(data.category, data.probability);
      renderResults(data.results);
      showMessage("");
    } catch (err) {
      if (seq !== requestSeq) return;
      renderPrediction(null, null);
      grid.replaceChildren();
      emptyState.hidden = false;
      emptyState.querySelector("p").textContent = "No results for this photo.";
      $("results-count").textContent = "";
      showMessage(err.message || String(err), "error");
    } finally {
      if (seq === requestSeq) document.body.classList.remove("busy");
    }
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
  kInput.addEventListener("change", search);

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
      const model = h.model ? ` · ${h.model}` : "";
      $("index-info").textContent = `${h.index_size.toLocaleString()} products indexed${model}`;
      if (h.max_upload_bytes) $("max-size").textContent = `${Math.round(h.max_upload_bytes / 1048576)} MB`;
      if (h.top_k) kInput.value = h.top_k;
      $("index-info").dataset.state = "ok";
    })
    .catch(() => {
      $("index-info").textContent = "service unavailable";
      $("index-info").dataset.state = "error";
    });
})();
