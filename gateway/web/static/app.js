// ct-triage web page: plain JavaScript, no framework, no external URL (see gateway/web/page.py).
// It calls the gateway's own JSON API: GET /v1/models, POST /v1/models/<task>:explain (one image),
// POST /v1/models/<task>:predict_series?explain=top|<index> (the slices of one scan, or a .zip).
// Text goes into the page through textContent only: nothing the server or a file name says is
// ever parsed as HTML.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const IGNORED_FILES = /^(\.|__MACOSX$|DICOMDIR$|Thumbs\.db$|desktop\.ini$)/i;
  const HINTS = {
    0: "The gateway could not be reached: check that it is running and your network, then try again.",
    400: "The request was malformed: check the files you picked (one image, the slices of one scan, or one .zip).",
    404: "This model is not served (any more): reload the page to refresh the list of tasks.",
    405: "The gateway does not accept this request: reload the page (it may be out of date).",
    413: "Too large: send fewer slices or smaller files (the gateway caps the request size and the number of slices).",
    415: "Unsupported type: send PNG or JPEG pictures, DICOM files, or a .zip of them.",
    422: "The image could not be decoded: is every file a complete picture or DICOM object?",
    429: "Too many requests: wait a moment and try again.",
    500: "The gateway failed unexpectedly: try again; if it persists, tell the operator.",
    502: "The model server answered with an error: try again; if it persists, tell the operator.",
    503: "The model server is unavailable right now: retry later.",
    504: "The model server took too long to answer: retry later, or send fewer slices.",
  };

  // Hints by error code where the status alone says too little.
  const CODE_HINTS = {
    out_of_domain: "This model was not made for this image (another task, modality or body part, or not a scan slice at all): pick the task that fits the image.",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    task: $("task"),
    modelInfo: $("model-info"),
    modelWarning: $("model-warning"),
    drop: $("drop"),
    files: $("files"),
    folder: $("folder"),
    selection: $("selection"),
    run: $("run"),
    clear: $("clear"),
    status: $("status"),
    error: $("error"),
    errorTitle: $("error-title"),
    errorMessage: $("error-message"),
    errorHint: $("error-hint"),
    result: $("result"),
    resultWarning: $("result-warning"),
    verdict: $("verdict"),
    probs: $("probs"),
    probsNote: $("probs-note"),
    heatmapFigure: $("heatmap-figure"),
    heatmap: $("heatmap"),
    heatmapCaption: $("heatmap-caption"),
    original: $("original"),
    overlayToggle: $("overlay-toggle"),
    overlayNote: $("overlay-note"),
    sliceView: $("slice-view"),
    sliceThresholds: $("slice-thresholds"),
    sliceVerdictHeading: $("slice-verdict-heading"),
    noHeatmap: $("no-heatmap"),
    series: $("series"),
    plot: $("plot"),
    plotNote: $("plot-note"),
    sliceRows: $("slice-rows"),
    sliceScoreHeading: $("slice-score-heading"),
    answerMeta: $("answer-meta"),
  };

  const state = {
    models: [],
    files: [],
    series: false, // several files or a zip: predict_series
    answer: null, // the last answer (single or series)
    chosen: null, // the chosen slice index (series)
    controller: null, // AbortController of the request in flight
    notExplainable: new Set(), // tasks whose served version has no explain signature
    originalUrl: null, // blob: URL of the chosen file, shown when the overlay is hidden
    plotWidth: 0, // the plot's container width the plot was drawn for
  };
  const MIN_POINT_SPACING = 24; // px between two slices on the plot: each point a 24 px target

  // --------------------------------------------------------------------------- small helpers

  function node(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const fmt = (p, digits = 3) => (isNumber(p) ? p.toFixed(digits) : "–");
  const pct = (p) => (isNumber(p) ? `${(100 * p).toFixed(1)} %` : "–");

  function formatValue(v) {
    if (isNumber(v)) return Number.isInteger(v) ? String(v) : v.toFixed(3);
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (v === null || v === undefined) return "–";
    if (Array.isArray(v)) return v.map(formatValue).join(", ");
    if (typeof v === "object") {
      return Object.entries(v)
        .map(([k, x]) => `${k}: ${formatValue(x)}`)
        .join("; ");
    }
    return String(v);
  }

  function setStatus(text) {
    el.status.textContent = text;
  }

  function showWarning(box, text) {
    box.replaceChildren();
    if (!text) {
      box.hidden = true;
      return;
    }
    box.append(node("strong", { text: "Warning: " }), document.createTextNode(text));
    box.hidden = false;
  }

  // --------------------------------------------------------------------------- the API

  class ApiFailure extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  async function api(url, init) {
    let response;
    try {
      response = await fetch(url, {
        ...init,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiFailure(0, "network", `Cannot reach the gateway (${err && err.message ? err.message : err}).`);
    }
    const type = response.headers.get("Content-Type") || "";
    let text = "";
    try {
      text = await response.text();
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiFailure(0, "network", "The connection broke while the answer was being read.");
    }
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    const retryAfter = response.headers.get("Retry-After");
    if (!response.ok) {
      const error = body && typeof body === "object" && body.error;
      if (error && typeof error === "object") {
        throw new ApiFailure(response.status, String(error.code || `http_${response.status}`), String(error.message || ""), retryAfter);
      }
      const what = type ? `a ${type.split(";")[0]} body` : "a body without a content type";
      throw new ApiFailure(response.status, `http_${response.status}`, `The gateway answered ${response.status} ${response.statusText} with ${what}, not the JSON error it should send.`, retryAfter);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new ApiFailure(response.status, "not_json", `The gateway answered ${response.status} but not with a JSON object (content type: ${type || "none"}).`);
    }
    body.__requestId = response.headers.get("X-Request-ID");
    return body;
  }

  function showError(failure) {
    if (failure && failure.name === "AbortError") return;
    const status = failure instanceof ApiFailure ? failure.status : -1;
    const code = failure instanceof ApiFailure ? failure.code : "page_error";
    el.errorTitle.textContent = status > 0 ? `Error ${status} (${code})` : status === 0 ? "No answer from the gateway" : "Unexpected problem in the page";
    el.errorMessage.textContent = failure && failure.message ? failure.message : String(failure);
    let hint = CODE_HINTS[code] || HINTS[status] || (status >= 500 ? HINTS[500] : status > 0 ? "Unexpected answer: reload the page and try again." : "Reload the page and try again.");
    if (failure instanceof ApiFailure && failure.retryAfter) hint += ` The gateway suggests retrying after ${failure.retryAfter} s.`;
    el.errorHint.textContent = hint;
    el.error.dataset.status = String(status);
    el.error.hidden = false;
    setStatus(status === 0 ? "Failed: no answer." : `Failed with status ${status}.`);
  }

  function clearError() {
    el.error.hidden = true;
    delete el.error.dataset.status;
  }

  // --------------------------------------------------------------------------- models

  function currentModel() {
    return state.models.find((m) => m.task === el.task.value) || null;
  }

  function explainable(model) {
    return Boolean(model) && model.explainable !== false && !state.notExplainable.has(model.task);
  }

  async function loadModels() {
    setStatus("Loading the models…");
    try {
      const body = await api("/v1/models", { method: "GET" });
      if (!Array.isArray(body.models)) throw new ApiFailure(200, "bad_answer", "GET /v1/models has no list of models.");
      state.models = body.models.filter((m) => m && typeof m.task === "string");
    } catch (err) {
      el.task.replaceChildren(node("option", { value: "", text: "no models (see the error below)" }));
      showError(err);
      return;
    }
    el.task.replaceChildren(...state.models.map((m) => node("option", { value: m.task, text: `${m.task} (version ${m.version})` })));
    el.task.disabled = state.models.length === 0;
    if (state.models.length === 0) {
      el.task.replaceChildren(node("option", { value: "", text: "the gateway serves no model" }));
    }
    const wanted = new URLSearchParams(location.search).get("task");
    if (wanted && state.models.some((m) => m.task === wanted)) el.task.value = wanted;
    renderModel();
    setStatus("Pick a task and some images.");
  }

  function renderModel() {
    const model = currentModel();
    el.modelInfo.replaceChildren();
    showWarning(el.modelWarning, null);
    if (!model) return;
    const facts = node("dl", { class: "facts" });
    const fact = (term, value) => {
      if (value === null || value === undefined || value === "") return;
      facts.append(node("dt", { text: term }), node("dd", { text: value }));
    };
    fact("version", model.version);
    fact("labels", Array.isArray(model.labels) ? model.labels.join(", ") : null);
    fact("input", Array.isArray(model.input_shape) ? model.input_shape.join(" × ") : null);
    if (isNumber(model.threshold) && model.threshold >= 0 && model.positive_label) {
      fact("slice threshold", `${model.positive_label} when p ≥ ${fmt(model.threshold)}`);
    }
    if (model.scan_rule) {
      const rule = model.scan_rule;
      fact("scan rule", `${rule.description || rule.aggregation || "scan rule"}; positive when ≥ ${fmt(rule.threshold)}`);
    }
    if (model.window) {
      const w = model.window;
      fact("CT window", `${w.name ? w.name + ": " : ""}centre ${formatValue(w.center)} HU, width ${formatValue(w.width)} HU`);
    }
    if (model.label_groups) fact("findings", Object.entries(model.label_groups).map(([g, ls]) => `${g} = ${ls.join(" + ")}`).join("; "));
    fact("heatmaps", explainable(model) ? "yes" : "no (this version has no explain signature)");
    if (model.validated === true) fact("validated", "yes: meets the task's validation floor");
    else if (model.validated === false) fact("validated", "NO");
    else fact("validated", "not stated by this model version");
    if (model.intended_use) fact("intended use", model.intended_use);
    if (model.domain) {
      const d = model.domain;
      const kinds = [d.input, Array.isArray(d.modalities) && d.modalities.length ? "DICOM modality " + d.modalities.join("/") : null].filter(Boolean).join("; ");
      fact("made for", kinds);
      if (d.ood && isNumber(d.ood.threshold)) fact("refuses", `images whose out-of-distribution score is above ${fmt(d.ood.threshold)}`);
    }
    el.modelInfo.append(facts);

    if (model.validation && typeof model.validation === "object") {
      el.modelInfo.append(validationTable(model.validation));
    }
    if (model.validated === false) {
      showWarning(el.modelWarning, `${model.task} version ${model.version} is not validated: ${model.validated_reason || "no reason given"}. Do not rely on its answers.`);
    }
  }

  function validationTable(validation) {
    const rows = Object.entries(validation).filter(([k]) => k !== "how");
    const table = node("table", { class: "validation" });
    table.append(node("caption", { text: "Validation figures" }));
    const body = node("tbody");
    for (const [k, v] of rows) {
      body.append(node("tr", {}, node("th", { scope: "row", text: k }), node("td", { text: formatValue(v) })));
    }
    table.append(body);
    const box = node("div", { class: "validation-box" }, table);
    if (validation.how) box.append(node("p", { class: "help how", text: `How: ${formatValue(validation.how)}` }));
    return box;
  }

  // --------------------------------------------------------------------------- files

  async function filesFromDrop(dataTransfer) {
    // Entries must be taken synchronously, before the first await: the list dies with the event.
    const entries = [];
    const plain = [];
    for (const item of Array.from(dataTransfer.items || [])) {
      if (item.kind !== "file") continue;
      const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry) entries.push(entry);
      else {
        const f = item.getAsFile();
        if (f) plain.push(f);
      }
    }
    if (entries.length === 0 && plain.length === 0) return Array.from(dataTransfer.files || []);
    const out = plain.slice();
    for (const entry of entries) await walk(entry, out);
    return out;
  }

  async function walk(entry, out) {
    if (entry.isFile) {
      out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      return;
    }
    if (!entry.isDirectory) return;
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) break;
      for (const child of batch) await walk(child, out);
    }
  }

  function pathOf(file) {
    return file.webkitRelativePath || file.name;
  }

  async function isZip(file) {
    if (/\.zip$/i.test(file.name) || /zip/i.test(file.type)) return true;
    try {
      const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
      return head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
    } catch (_) {
      return false;
    }
  }

  async function choose(files) {
    const kept = files.filter((f) => !IGNORED_FILES.test(f.name));
    kept.sort((a, b) => pathOf(a).localeCompare(pathOf(b), undefined, { numeric: true, sensitivity: "base" }));
    state.files = kept;
    state.answer = null;
    state.chosen = null;
    state.series = kept.length > 1 || (kept.length === 1 && (await isZip(kept[0])));
    const skipped = files.length - kept.length;
    if (kept.length === 0) {
      el.selection.textContent = files.length ? `Nothing to send: ${skipped} hidden or index file(s) skipped.` : "";
    } else {
      const total = kept.reduce((n, f) => n + f.size, 0);
      const what = state.series ? (kept.length === 1 ? "a .zip: the slices of one scan" : `${kept.length} files: the slices of one scan`) : "one image";
      const names = kept.length === 1 ? kept[0].name : `${kept[0].name} … ${kept[kept.length - 1].name}`;
      el.selection.textContent = `${what} (${names}, ${(total / 1024).toFixed(0)} KiB)${skipped ? `; ${skipped} hidden or index file(s) skipped` : ""}.`;
    }
    el.run.disabled = kept.length === 0;
    el.clear.disabled = files.length === 0;
    if (kept.length) await analyse();
  }

  // --------------------------------------------------------------------------- requests

  function startRequest() {
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    return state.controller;
  }

  function formWith(files) {
    const form = new FormData();
    for (const f of files) form.append("image", f, f.name);
    return form;
  }

  function endpoint(task, method) {
    return `/v1/models/${encodeURIComponent(task)}:${method}`;
  }

  async function analyse() {
    const model = currentModel();
    if (!model || state.files.length === 0) return;
    clearError();
    const controller = startRequest();
    const started = performance.now();
    el.run.disabled = true;
    el.result.setAttribute("aria-busy", "true");
    const n = state.files.length;
    setStatus(state.series ? `Sending ${n === 1 ? "the .zip" : n + " slices"} to ${model.task}…` : `Sending the image to ${model.task}…`);
    try {
      const answer = state.series ? await requestSeries(model, "top", controller) : await requestSingle(model, controller);
      if (controller.signal.aborted) return;
      state.answer = answer;
      render();
      setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    } catch (err) {
      if (err && err.name === "AbortError") return;
      state.answer = null;
      el.result.hidden = true;
      showError(err);
    } finally {
      if (state.controller === controller) {
        state.controller = null;
        el.run.disabled = state.files.length === 0;
        el.result.removeAttribute("aria-busy");
      }
    }
  }

  async function requestSingle(model, controller) {
    const withHeatmap = explainable(model);
    try {
      return await api(endpoint(model.task, withHeatmap ? "explain" : "predict"), { method: "POST", body: formWith(state.files), signal: controller.signal });
    } catch (err) {
      if (!(withHeatmap && notExplainable(err, model))) throw err;
      return api(endpoint(model.task, "predict"), { method: "POST", body: formWith(state.files), signal: controller.signal });
    }
  }

  async function requestSeries(model, explain, controller) {
    const withHeatmap = explainable(model);
    const url = (heat) => endpoint(model.task, "predict_series") + (heat ? `?explain=${encodeURIComponent(explain)}` : "");
    try {
      return await api(url(withHeatmap), { method: "POST", body: formWith(state.files), signal: controller.signal });
    } catch (err) {
      if (!(withHeatmap && notExplainable(err, model))) throw err;
      return api(url(false), { method: "POST", body: formWith(state.files), signal: controller.signal });
    }
  }

  function notExplainable(err, model) {
    if (err instanceof ApiFailure && err.status === 404 && err.code === "not_explainable") {
      state.notExplainable.add(model.task);
      renderModel();
      return true;
    }
    return false;
  }

  // A slice chosen in the table (far below the heatmap): bring the chosen slice's view into sight
  // and move focus there (the row's button is redrawn anyway); the status line (aria-live)
  // announces what is shown. A point on the plot keeps the focus: the view is right above it.
  function bringSliceViewIntoSight() {
    el.sliceView.scrollIntoView({ block: "start" });
    el.sliceView.focus({ preventScroll: true });
  }

  function sliceAnnouncement(a, index) {
    const s = a.slices[index];
    if (!s) return "";
    const { label, p } = sliceScore(a, s);
    const heat = a.explained && a.explained.index === index && a.explained.heatmap_png ? "heatmap shown" : "no heatmap";
    return `Slice ${index} (${s.name}): ${heat}; p(${label}) ${fmt(p)}, ${sliceVerdictText(a, s)}.`;
  }

  async function chooseSlice(index, fromTable) {
    const answer = state.answer;
    if (!answer || !Array.isArray(answer.slices) || !answer.slices[index]) return;
    state.chosen = index;
    const model = currentModel();
    if (!explainable(model) || answer.model !== (model && model.task)) {
      renderSeriesParts();
      if (fromTable) bringSliceViewIntoSight();
      setStatus(sliceAnnouncement(answer, index));
      return;
    }
    clearError();
    const controller = startRequest();
    renderSeriesParts(true);
    if (fromTable) bringSliceViewIntoSight();
    setStatus(`Asking for the heatmap of slice ${index}…`);
    try {
      const next = await requestSeries(model, String(index), controller);
      if (controller.signal.aborted) return;
      state.answer = next;
      state.chosen = next.explained && isNumber(next.explained.index) ? next.explained.index : index;
      render();
      setStatus(sliceAnnouncement(next, state.chosen));
    } catch (err) {
      if (err && err.name === "AbortError") return;
      showError(err);
    } finally {
      if (state.controller === controller) state.controller = null;
    }
  }

  // --------------------------------------------------------------------------- rendering

  function render() {
    const a = state.answer;
    if (!a) return;
    el.result.hidden = false;
    const warning = a.validated === false ? `${a.model} version ${a.version} is not validated: ${a.validated_reason || "no reason given"}. This answer is not reliable.` : null;
    showWarning(el.resultWarning, warning);
    if (Array.isArray(a.slices)) {
      if (a.explained && isNumber(a.explained.index)) state.chosen = a.explained.index;
      else if (state.chosen === null) state.chosen = a.scan && isNumber(a.scan.top_slice) ? a.scan.top_slice : 0;
      el.series.hidden = false; // before drawing: the plot is drawn for its container's width
      renderSeriesVerdict(a);
      renderSeriesParts();
    } else {
      renderSingleVerdict(a);
      renderBars(a.probabilities, positiveLabel(a.model), a.label);
      el.probsNote.textContent = "";
      renderHeatmap(a.heatmap_png, a.heatmap_label, null);
      el.series.hidden = true;
    }
    const meta = [`model ${a.model} version ${a.version}`];
    if (a.modality) meta.push(`modality ${a.modality}`);
    if (a.order) meta.push(`slices ordered by ${a.order.replace(/_/g, " ")}`);
    if (a.__requestId) meta.push(`request ${a.__requestId}`);
    el.answerMeta.textContent = meta.join(" · ");
  }

  function positiveLabel(task) {
    const model = state.models.find((m) => m.task === task);
    return model && model.positive_label ? model.positive_label : null;
  }

  function verdictBox(kind, headline, lines) {
    el.verdict.replaceChildren();
    el.verdict.className = `verdict ${kind}`;
    el.verdict.append(node("p", { class: "verdict-kind", text: lines.kind }));
    el.verdict.append(node("p", { class: "verdict-label", id: "verdict-label", text: headline }));
    for (const line of lines.details) if (line) el.verdict.append(node("p", { class: "verdict-detail", text: line }));
  }

  function renderSingleVerdict(a) {
    const kind = a.positive === true ? "positive" : a.positive === false ? "negative" : "neutral";
    const pos = positiveLabel(a.model);
    let headline = a.label;
    const details = [];
    if (typeof a.positive === "boolean") {
      headline = `${a.positive ? "Positive" : "Negative"}: ${a.label}`;
      if (pos && a.probabilities && isNumber(a.threshold)) {
        const p = a.probabilities[pos];
        details.push(`p(${pos}) = ${fmt(p)} ${p >= a.threshold ? "≥" : "<"} the model's threshold ${fmt(a.threshold)}`);
      }
    } else if (a.probabilities && isNumber(a.probabilities[a.label])) {
      details.push(`most probable label, p = ${fmt(a.probabilities[a.label])}`);
    }
    if (a.finding && a.finding.label) details.push(`Finding: ${a.finding.label} (p = ${fmt(a.finding.probability)})`);
    if (a.modality) details.push(`Modality: ${a.modality}`);
    verdictBox(kind, headline, { kind: "Image verdict", details });
  }

  function renderSeriesVerdict(a) {
    const scan = a.scan || {};
    const kind = scan.positive === true ? "positive" : scan.positive === false ? "negative" : "neutral";
    const details = [];
    let headline = scan.label || "–";
    const n = Array.isArray(a.slices) ? a.slices.length : 0;
    const out = isNumber(scan.out_of_domain_slices) ? scan.out_of_domain_slices : 0;
    const used = n - out;
    const over = `${used} of ${n} slice${n === 1 ? "" : "s"}`;
    if (typeof scan.positive === "boolean") {
      headline = `${scan.positive ? "Positive" : "Negative"}: ${scan.label}`;
      if (isNumber(scan.probability) && isNumber(scan.threshold)) {
        details.push(`How: the scan rule (${scan.rule || "the model's scan rule"}) over ${over} gives a scan score of ${fmt(scan.probability)}, ${scan.probability >= scan.threshold ? "at or above" : "below"} the scan threshold ${fmt(scan.threshold)}: ${scan.positive ? "positive" : "negative"}.`);
      } else if (scan.rule) {
        details.push(`How: ${scan.rule}, over ${over}.`);
      }
      const pos = positiveLabel(a.model);
      const model = state.models.find((m) => m.task === a.model);
      if (model && isNumber(model.threshold) && model.threshold >= 0 && pos) {
        const k = a.slices.filter((s) => s.positive === true).length;
        details.push(`Each slice alone is called ${pos} at its own slice threshold ${fmt(model.threshold)} (${k} of ${n} here); the scan verdict uses the scan rule and its threshold, not those slice calls.`);
      }
    } else {
      const p = scan.probabilities && scan.probabilities[scan.label];
      details.push(`How: ${scan.rule || "mean of the slice probabilities"}, over ${over}${isNumber(p) ? `: ${scan.label} has the highest mean, ${fmt(p)}` : ""}. No threshold: the most probable label.`);
    }
    if (scan.finding && scan.finding.label) details.push(`Finding: ${scan.finding.label} (p = ${fmt(scan.finding.probability)})`);
    details.push(`${n} slice${n === 1 ? "" : "s"}${a.modality ? ", " + a.modality : ""}`);
    if (out) details.push(`${out} slice${out === 1 ? "" : "s"} out of the model's domain, left out of the verdict (marked in the slice list).`);
    else if (isNumber(scan.out_of_domain_slices)) details.push("Every slice is in the model's domain.");
    verdictBox(kind, headline, { kind: "Scan verdict", details });
  }

  function renderBars(probabilities, positive, chosenLabel) {
    el.probs.replaceChildren();
    if (!probabilities || typeof probabilities !== "object") return;
    for (const [label, p] of Object.entries(probabilities)) {
      const bar = node("progress", { max: "1", value: isNumber(p) ? String(p) : "0", "aria-label": `${label} probability` });
      const cls = ["bar", label === chosenLabel ? "chosen" : "", label === positive ? "positive-class" : ""].filter(Boolean).join(" ");
      el.probs.append(node("li", { class: cls }, node("span", { class: "bar-label", text: label }), bar, node("span", { class: "bar-value", text: pct(p) })));
    }
  }

  function originalFile(slice) {
    // The picked file behind this image (by name), when the browser can show it (not DICOM, zip).
    const files = state.files;
    const file = slice ? files.find((f) => f.name === slice.name || pathOf(f) === slice.name) : files.length === 1 ? files[0] : null;
    return file && /^image\/(png|jpeg|gif|webp|bmp)$/i.test(file.type) ? file : null;
  }

  function renderOverlay(slice) {
    const show = el.overlayToggle.checked;
    if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
    state.originalUrl = null;
    el.original.removeAttribute("src");
    el.overlayNote.hidden = true;
    if (show) {
      el.heatmap.hidden = false;
      el.original.hidden = true;
      return;
    }
    const file = originalFile(slice);
    if (file) {
      state.originalUrl = URL.createObjectURL(file);
      el.original.src = state.originalUrl;
      el.original.alt = `The image itself${slice ? ` (slice ${slice.index}, ${slice.name})` : ""}, without the heatmap`;
      el.original.hidden = false;
      el.heatmap.hidden = true;
    } else {
      el.heatmap.hidden = false;
      el.original.hidden = true;
      el.overlayNote.textContent = "This file cannot be shown by the browser (DICOM or inside a .zip): the heatmap stays on.";
      el.overlayNote.hidden = false;
    }
  }

  function renderHeatmap(png, label, slice) {
    renderOverlay(slice);
    if (typeof png === "string" && png.length > 0) {
      const where = slice ? ` on slice ${slice.index} (${slice.name})` : "";
      el.heatmap.alt = `Heatmap${where}: where the model looked for ${label || "its answer"}, blended over the image`;
      el.heatmap.src = `data:image/png;base64,${png}`;
      el.heatmapCaption.textContent = `Where the model looked for ${label || "its answer"}${where}.`;
      el.heatmapFigure.hidden = false;
      el.noHeatmap.hidden = true;
    } else {
      el.heatmapFigure.hidden = true;
      el.heatmap.removeAttribute("src");
      const model = state.models.find((m) => state.answer && m.task === state.answer.model);
      el.noHeatmap.textContent = model && !explainable(model) ? "No heatmap: this model version has no explain signature." : slice ? `No heatmap for slice ${slice.index} yet: choose it again to ask for one.` : "No heatmap in this answer.";
      el.noHeatmap.hidden = false;
    }
  }

  function sliceScore(a, s) {
    // The positive class's probability on two-class tasks, else the scan's top label's.
    const pos = positiveLabel(a.model);
    const label = pos && s.probabilities && pos in s.probabilities ? pos : a.scan && a.scan.label;
    return { label, p: s.probabilities ? s.probabilities[label] : undefined };
  }

  function sliceThreshold(a) {
    const model = state.models.find((m) => m.task === a.model);
    return model && isNumber(model.threshold) && model.threshold >= 0 && model.positive_label ? model.threshold : null;
  }

  function sliceVerdictText(a, s) {
    const t = sliceThreshold(a);
    const { p } = sliceScore(a, s);
    let text = s.label;
    if (typeof s.positive === "boolean" && t !== null) {
      text = `${s.positive ? "positive" : "negative"} (${isNumber(p) && p >= t ? "≥" : "<"} slice threshold ${fmt(t, 2)})`;
    }
    if (s.domain && s.domain.in_domain === false) text += "; out of domain, left out of the scan verdict";
    return text;
  }

  function renderSeriesParts(loading) {
    const a = state.answer;
    const slices = a.slices;
    const chosen = slices[state.chosen] || slices[0];
    renderBars(chosen.probabilities, positiveLabel(a.model), chosen.label);
    el.probsNote.textContent = `Slice ${chosen.index} (${chosen.name}): ${sliceVerdictText(a, chosen)}.`;
    const explained = a.explained && a.explained.index === chosen.index ? a.explained : null;
    if (loading) {
      el.heatmapCaption.textContent = `Loading the heatmap of slice ${chosen.index}…`;
    } else {
      renderHeatmap(explained && explained.heatmap_png, explained && explained.heatmap_label, chosen);
    }
    renderPlot(a, chosen.index);
    renderSliceRows(a, chosen.index);
  }

  function renderPlot(a, chosenIndex) {
    const slices = a.slices;
    const n = slices.length;
    // Drawn at the container's width (one SVG unit = one CSS pixel, so 12 px text is 12 px), and
    // wider than it (the plot then scrolls sideways) when the slices would be under 24 px apart.
    const room = Math.floor(el.plot.clientWidth) || 720;
    state.plotWidth = room;
    const W = Math.max(Math.min(room, 900), 44 + 16 + Math.max(0, n - 1) * MIN_POINT_SPACING + 12);
    const H = 240;
    const m = { left: 44, right: 16, top: 14, bottom: 36 };
    const pw = W - m.left - m.right;
    const ph = H - m.top - m.bottom;
    const x = (i) => m.left + (n === 1 ? pw / 2 : (i * pw) / (n - 1));
    const y = (p) => m.top + (1 - Math.min(1, Math.max(0, p))) * ph;
    const scoreLabel = n ? sliceScore(a, slices[0]).label : "";
    const model = state.models.find((mm) => mm.task === a.model);
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot-svg", role: "group", "aria-label": `p(${scoreLabel}) of each of ${n} slices, in scan order` });
    plot.append(svg("title", { text: `p(${scoreLabel}) per slice` }));
    const axes = svg("g", { class: "axes", "aria-hidden": "true" });
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      axes.append(svg("line", { x1: m.left, x2: W - m.right, y1: y(t), y2: y(t), class: t === 0 ? "axis" : "grid" }));
      axes.append(svg("text", { x: m.left - 6, y: y(t) + 4, "text-anchor": "end", text: t.toFixed(2) }));
    }
    const step = Math.max(1, Math.ceil(n / 12));
    for (let i = 0; i < n; i += step) axes.append(svg("text", { x: x(i), y: H - m.bottom + 16, "text-anchor": "middle", text: String(i) }));
    axes.append(svg("text", { x: m.left + pw / 2, y: H - 4, "text-anchor": "middle", class: "axis-title", text: "slice (scan order)" }));
    plot.append(axes);

    const lines = svg("g", { class: "thresholds" });
    const scanThreshold = a.scan && isNumber(a.scan.threshold) ? a.scan.threshold : null;
    if (scanThreshold !== null) {
      lines.append(svg("line", { x1: m.left, x2: W - m.right, y1: y(scanThreshold), y2: y(scanThreshold), class: "threshold scan-threshold" }));
      lines.append(svg("text", { x: W - m.right, y: y(scanThreshold) - 4, "text-anchor": "end", class: "threshold-label", text: `scan threshold ${fmt(scanThreshold, 2)}` }));
    }
    if (model && isNumber(model.threshold) && model.threshold >= 0 && model.positive_label === scoreLabel && model.threshold !== scanThreshold) {
      lines.append(svg("line", { x1: m.left, x2: W - m.right, y1: y(model.threshold), y2: y(model.threshold), class: "threshold slice-threshold" }));
      lines.append(svg("text", { x: W - m.right, y: y(model.threshold) + 14, "text-anchor": "end", class: "threshold-label slice", text: `slice threshold ${fmt(model.threshold, 2)}` }));
    }
    plot.append(lines);

    const scores = slices.map((s) => sliceScore(a, s).p);
    const path = scores.map((p, i) => (isNumber(p) ? `${x(i).toFixed(1)},${y(p).toFixed(1)}` : null)).filter(Boolean).join(" ");
    plot.append(svg("polyline", { points: path, class: "score-line", "aria-hidden": "true" }));

    const points = svg("g", { class: "points" });
    const spacing = n > 1 ? pw / (n - 1) : pw;
    const r = Math.max(4, Math.min(7, spacing / 2 - 3));
    const hit = Math.max(12, Math.min(spacing / 2, 16)); // radius of the transparent tap target
    slices.forEach((s, i) => {
      const p = scores[i];
      if (!isNumber(p)) return;
      const cls = ["slice-point", s.positive === true ? "positive" : "", i === chosenIndex ? "chosen" : ""].filter(Boolean).join(" ");
      points.append(svg("circle", { cx: x(i).toFixed(1), cy: y(p).toFixed(1), r: hit.toFixed(1), class: "slice-hit", "data-slice": String(s.index), "aria-hidden": "true" }));
      const c = svg("circle", { cx: x(i).toFixed(1), cy: y(p).toFixed(1), r: i === chosenIndex ? r + 2.5 : r, class: cls, tabindex: "0", role: "button", "data-index": String(s.index), "aria-label": `slice ${s.index}, ${s.name}: p(${scoreLabel}) ${fmt(p)}; show its heatmap` });
      c.append(svg("title", { text: `slice ${s.index} (${s.name}): p(${scoreLabel}) = ${fmt(p)}` }));
      points.append(c);
    });
    plot.append(points);
    const active = document.activeElement;
    const focused = active && el.plot.contains(active) && active.dataset ? active.dataset.index : null;
    el.plot.replaceChildren(plot);
    if (focused !== null && focused !== undefined) {
      const again = plot.querySelector(`[data-index="${focused}"]`);
      if (again) again.focus();
    }
    const thresholdNote = scanThreshold !== null ? " The dashed line is the scan threshold (the scan rule compares its aggregated score with it); the dotted one, where shown, is the slice threshold (each slice's own call)." : "";
    el.plotNote.textContent = `Each point is one slice: its probability of ${scoreLabel}. Choose a point (click, or Tab then Enter) for its heatmap.${thresholdNote}`;
    el.sliceScoreHeading.textContent = `p(${scoreLabel})`;
    const t = sliceThreshold(a);
    el.sliceVerdictHeading.textContent = t !== null ? `slice verdict (slice threshold ${fmt(t, 2)})` : "slice label";
    el.sliceThresholds.textContent =
      t !== null
        ? `Each row is that slice alone, called positive when its p(${scoreLabel}) ≥ the slice threshold ${fmt(t, 2)}.` +
          (scanThreshold !== null ? ` The scan verdict is not a count of these rows: it is the scan rule's score against the scan threshold ${fmt(scanThreshold, 2)}.` : "")
        : "Each row is that slice alone: its most probable label.";
  }

  function renderSliceRows(a, chosenIndex) {
    el.sliceRows.replaceChildren(
      ...a.slices.map((s) => {
        const { p } = sliceScore(a, s);
        const button = node("button", { type: "button", class: "slice-button", "data-index": String(s.index), "aria-pressed": s.index === chosenIndex ? "true" : "false", "aria-label": `show slice ${s.index}`, text: s.index === chosenIndex ? "shown" : "show" });
        const out = s.domain && s.domain.in_domain === false;
        const cls = [s.index === chosenIndex ? "chosen" : "", out ? "out-of-domain" : ""].filter(Boolean).join(" ") || null;
        return node("tr", { class: cls }, node("td", { text: s.index }), node("td", { class: "file", text: s.name }), node("td", { text: fmt(p) }), node("td", { class: "slice-verdict", text: sliceVerdictText(a, s) }), node("td", {}, button));
      })
    );
  }

  // --------------------------------------------------------------------------- wiring

  function wire() {
    el.task.addEventListener("change", () => {
      renderModel();
      state.chosen = null;
      if (state.files.length) analyse();
    });
    el.files.addEventListener("change", () => {
      choose(Array.from(el.files.files || []));
      el.files.value = "";
    });
    el.folder.addEventListener("change", () => {
      choose(Array.from(el.folder.files || []));
      el.folder.value = "";
    });
    el.run.addEventListener("click", () => analyse());
    el.clear.addEventListener("click", () => {
      if (state.controller) state.controller.abort();
      state.files = [];
      state.answer = null;
      el.selection.textContent = "";
      el.result.hidden = true;
      el.run.disabled = true;
      el.clear.disabled = true;
      clearError();
      setStatus("Pick a task and some images.");
    });
    for (const type of ["dragenter", "dragover"]) {
      el.drop.addEventListener(type, (e) => {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        el.drop.classList.add("over");
      });
    }
    el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
    el.drop.addEventListener("drop", async (e) => {
      e.preventDefault();
      el.drop.classList.remove("over");
      try {
        await choose(await filesFromDrop(e.dataTransfer));
      } catch (err) {
        showError(new ApiFailure(-1, "drop", `Could not read the dropped files: ${err && err.message ? err.message : err}`));
      }
    });
    el.drop.addEventListener("keydown", (e) => {
      if (e.target === el.drop && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        el.files.click();
      }
    });
    // Dropping outside the zone must not navigate away to the file.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());

    const pick = (e) => {
      // A point, its larger transparent tap target (data-slice), or a row's button.
      const target = e.target.closest("[data-index], [data-slice]");
      const index = target ? Number(target.dataset.index !== undefined ? target.dataset.index : target.dataset.slice) : NaN;
      if (target && el.plot.contains(target)) chooseSlice(index, false);
      else if (target && el.sliceRows.contains(target)) chooseSlice(index, true);
    };
    el.plot.addEventListener("click", pick);
    el.sliceRows.addEventListener("click", pick);
    el.plot.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        pick(e);
      }
    });
    el.overlayToggle.addEventListener("change", () => {
      const a = state.answer;
      renderOverlay(a && Array.isArray(a.slices) ? a.slices[state.chosen] : null);
      setStatus(el.overlayToggle.checked ? "Heatmap overlay shown." : el.original.hidden ? "The image itself cannot be shown: the heatmap stays on." : "Heatmap overlay hidden: the image itself is shown.");
    });
    // Redraw the plot when its container changes width (a phone turned, a window resized).
    window.addEventListener("resize", () => {
      const a = state.answer;
      if (a && Array.isArray(a.slices) && !el.series.hidden && Math.floor(el.plot.clientWidth) !== state.plotWidth) renderPlot(a, state.chosen);
    });
    el.heatmap.addEventListener("error", () => {
      if (el.heatmap.getAttribute("src")) el.heatmapCaption.textContent = "The heatmap image could not be shown (the gateway sent an invalid PNG).";
    });
  }

  wire();
  loadModels();
})();
