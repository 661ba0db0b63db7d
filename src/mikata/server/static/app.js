// mikata serve: the little JavaScript the pages need (maps on demand, reviews, the embedding scatter).
"use strict";

function $(sel, root) { return (root || document).querySelector(sel); }
function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

// ---------------------------------------------------------------- image page: maps on demand
(function mapForm() {
  const form = $("#mapform");
  if (!form) return;
  const img = $("#overlay"), status = $("#mapstatus");
  let shown = null, ticker = null;
  function secs(s) { return s < 10 ? s.toFixed(1) + " s" : s < 90 ? Math.round(s) + " s" : (s / 60).toFixed(1) + " min"; }
  // While a map computes: which method, for which class, the seconds so far, and what to expect
  // (the median of this method's earlier maps in the run, from /api/map-estimate).
  function waiting(method, clsName, t0, est) {
    const parts = ["computing " + method + " for " + clsName + ": " + secs((performance.now() - t0) / 1000) + " so far"];
    if (est && est.cached) parts.push("cached, loading it");
    else if (est && est.seconds !== null) {
      parts.push("about " + secs(est.seconds) + " (median of " + est.measured + " earlier " + method + " map" +
                 (est.measured === 1 ? "" : "s") + " in this run)");
    } else if (est) parts.push("the first " + method + " map in this run: no estimate yet");
    if (est && !est.cached && !est.model_loaded) parts.push("the model loads first");
    return parts.join(" · ");
  }
  async function show() {
    const id = form.dataset.id, method = $("#method").value, cls = $("#cls").value;
    const key = method + "/" + cls, clsName = $("#cls").selectedOptions[0].textContent;
    const query = "?method=" + encodeURIComponent(method) + "&cls=" + encodeURIComponent(cls);
    const t0 = performance.now();
    let est = null;
    // the previous map and its legend go while the new one computes: they belong to another method or class
    img.hidden = true;
    delete img.dataset.key;
    drawLegend($("#maplegend"), null);
    status.textContent = waiting(method, clsName, t0, est);
    status.className = "muted busy";
    if (ticker) clearInterval(ticker);
    ticker = setInterval(() => { status.textContent = waiting(method, clsName, t0, est); }, 1000);
    fetch("/api/map-estimate/" + id + query).then((r) => r.ok ? r.json() : null)
      .then((e) => { est = e; if (ticker) status.textContent = waiting(method, clsName, t0, est); }).catch(() => {});
    const resp = await fetch("/map/" + id + ".png" + query);
    clearInterval(ticker);
    ticker = null;
    if (!resp.ok) {
      status.textContent = (await resp.text()) || ("error " + resp.status);
      status.className = "error";
      return;
    }
    const blob = await resp.blob();
    const legend = JSON.parse(resp.headers.get("x-map-legend") || "null");
    if (shown) URL.revokeObjectURL(shown);
    shown = URL.createObjectURL(blob);
    img.onload = () => {
      img.hidden = false;
      img.dataset.key = key;
      drawLegend($("#maplegend"), legend);
      status.textContent = method + " · " + $("#cls").selectedOptions[0].textContent + " · " +
        Math.round(performance.now() - t0) + " ms";
      status.className = "muted";
    };
    img.src = shown;
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); show(); });
  $$(".mapfor").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault(); $("#cls").value = a.dataset.cls; show();
  }));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowLeft" && $("#prev")) location.href = $("#prev").href;
    if (e.key === "ArrowRight" && $("#next")) location.href = $("#next").href;
  });
})();

// --------------------------------------------------------------- a map's legend (see _legend.html)
// legend: display.MapScale.legend() from the X-Map-Legend header: its colormap's stops, tick labels,
// one line of meaning, or a note when the map is empty ("no positive evidence for X: the map is all zero").
function drawLegend(el, legend) {
  if (!el) return;
  el.replaceChildren();
  el.hidden = !legend;
  if (!legend) return;
  el.className = "maplegend" + (legend.signed ? " signed" : "") + (legend.note ? " empty" : "");
  el.dataset.cmap = legend.cmap;
  if (legend.note) {
    const p = document.createElement("p");
    p.className = "legend-note"; p.textContent = legend.note;
    el.append(p);
    return;
  }
  const bar = document.createElement("div");
  bar.className = "legend-bar";
  bar.style.background = "linear-gradient(to right, " + legend.stops.join(", ") + ")";
  const ticks = document.createElement("div");
  ticks.className = "legend-ticks";
  legend.ticks.forEach(([pos, label]) => {
    const s = document.createElement("span");
    s.style.left = (100 * pos) + "%"; s.textContent = label;
    ticks.append(s);
  });
  const text = document.createElement("p");
  text.className = "legend-text"; text.textContent = legend.text;
  el.append(bar, ticks, text);
}

// ---------------------------------------------------------------------------- label reviews
// One verdict = one POST /api/review/ID. "fine" keeps the given label: it never sends a suggested class.
async function mikataReview(box, verdict) {
  const sel = $("select.suggested", box);
  const body = { verdict: verdict || null,
                 suggested: verdict === "wrong" && sel && sel.value !== "" ? Number(sel.value) : null };
  const out = $(".verdict", box);
  const resp = await fetch("/api/review/" + box.dataset.id, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!resp.ok) { if (out) { out.textContent = await resp.text(); out.className = "verdict error"; } return false; }
  $$("button.mark", box).forEach((x) => x.classList.toggle("on", !!body.verdict && x.dataset.verdict === body.verdict));
  if (verdict === "fine" && sel) sel.value = "";
  box.classList.toggle("done", !!body.verdict);
  box.dataset.verdict = body.verdict || "";
  if (out) { out.className = "verdict"; out.textContent = body.verdict ? "saved: label " + body.verdict : "cleared"; }
  return true;
}

$$(".review").forEach((box) => {
  $$("button.mark", box).forEach((b) => b.addEventListener("click", () => mikataReview(box, b.dataset.verdict)));
});

// The review queue (Label review page, label issues): j/k or arrows move, w / f give a verdict and move on.
(function reviewQueue() {
  const queue = $(".review-queue");
  if (!queue) return;
  const items = $$(".review", queue);
  if (!items.length) return;
  let at = 0;
  function go(k) {
    at = Math.max(0, Math.min(items.length - 1, k));
    items.forEach((x, j) => x.classList.toggle("current", j === at));
    items[at].focus({ preventScroll: true });
    items[at].scrollIntoView({ block: "nearest" });
  }
  items.forEach((x, j) => x.addEventListener("click", () => { if (at !== j) go(j); }));
  go(0);
  document.addEventListener("keydown", async (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    const box = items[at];
    if (e.key === "j" || e.key === "ArrowDown" || e.key === "ArrowRight") { e.preventDefault(); go(at + 1); }
    else if (e.key === "k" || e.key === "ArrowUp" || e.key === "ArrowLeft") { e.preventDefault(); go(at - 1); }
    else if (e.key === "w" || e.key === "f") {
      e.preventDefault();
      if (await mikataReview(box, e.key === "w" ? "wrong" : "fine")) go(at + 1);
    } else if (e.key === "u") { e.preventDefault(); await mikataReview(box, null); }
    else if (e.key === "o" || e.key === "Enter") { e.preventDefault(); location.href = "/image/" + box.dataset.id; }
  });
})();

// ------------------------------------------------------------------------ embedding scatter
// (plotly.min.js is loaded after this file, only on the embedding page: start once everything is loaded)
window.addEventListener("load", () => { if ($("#scatter") && window.Plotly) mikataEmbedding(); });

function mikataEmbedding() {
  const el = $("#scatter"), info = $("#selinfo"), grid = $("#selection");
  let data = null;
  function tile(i, k) {
    const a = document.createElement("a");
    a.className = "tile" + (data.label[k] !== data.pred[k] ? " wrong" : "");
    a.href = "/image/" + i; a.dataset.id = i;
    a.title = "#" + i + ": " + data.classes[data.label[k]] + " → " + data.classes[data.pred[k]];
    const img = document.createElement("img");
    img.src = "/thumb/" + i + "?size=96"; img.width = 96; img.height = 96; img.loading = "lazy"; img.alt = "image " + i;
    const cap = document.createElement("span");
    cap.className = "cap"; cap.textContent = data.classes[data.label[k]] + " → " + data.classes[data.pred[k]];
    a.append(img, cap);
    return a;
  }
  function showSelection(points) {
    grid.replaceChildren();
    const ks = points.map((p) => p.customdata);
    info.textContent = ks.length ? ks.length + " selected" + (ks.length > 200 ? " (first 200 shown)" : "") : "Nothing selected.";
    ks.slice(0, 200).forEach((k) => grid.append(tile(data.ids[k], k)));
  }
  // plotly reads trace names as its own little HTML: a class or field value is shown as text, never markup
  function plain(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  const MAX_GROUPS = 30;  // more distinct values than this: the largest ones, the rest as "other"
  function groupsOf(key) {
    if (key === "label" || key === "pred") return { names: data.classes, code: (k) => data[key][k] };
    if (key === "correct") return { names: ["right", "wrong"], code: (k) => (data.label[k] === data.pred[k] ? 0 : 1) };
    const f = data.fields[Object.keys(data.fields)[Number(key.split(":")[1])]];
    const counts = f.values.map(() => 0);
    f.codes.forEach((c) => counts[c]++);
    const order = f.values.map((_, c) => c).sort((a, b) => counts[b] - counts[a]);
    if (order.length <= MAX_GROUPS) return { names: f.values.map((v) => v === "" ? "(no value)" : v), code: (k) => f.codes[k] };
    const keep = new Map(order.slice(0, MAX_GROUPS - 1).map((c, j) => [c, j]));
    const names = order.slice(0, MAX_GROUPS - 1).map((c) => f.values[c] === "" ? "(no value)" : f.values[c]).concat(["other"]);
    return { names: names, code: (k) => (keep.has(f.codes[k]) ? keep.get(f.codes[k]) : MAX_GROUPS - 1) };
  }
  function draw() {
    const errorsOnly = $("#errorsonly").checked;
    const groups = groupsOf($("#colorby") ? $("#colorby").value : "label");
    // SVG up to 5,000 points (works without WebGL); WebGL beyond
    const type = data.ids.length <= 5000 ? "scatter" : "scattergl";
    const traces = groups.names.map((name) => ({ type: type, mode: "markers", name: plain(name), x: [], y: [],
      customdata: [], text: [], hoverinfo: "text", marker: { size: 4, opacity: 0.7 } }));
    for (let k = 0; k < data.ids.length; k++) {
      if (errorsOnly && data.label[k] === data.pred[k]) continue;
      const t = traces[groups.code(k)];
      t.x.push(data.x[k]); t.y.push(data.y[k]); t.customdata.push(k);
      t.text.push(plain("#" + data.ids[k] + " " + data.classes[data.label[k]] + " → " + data.classes[data.pred[k]]));
    }
    const used = traces.filter((t) => t.x.length);
    el.dataset.traces = JSON.stringify(used.map((t) => [t.name, t.x.length]));
    Plotly.react(el, used, { dragmode: "lasso", margin: { l: 40, r: 10, t: 10, b: 40 }, height: 560,
      legend: { itemsizing: "constant" }, xaxis: { title: "PC 1" }, yaxis: { title: "PC 2" } },
      { displaylogo: false, responsive: true });
  }
  const loading = $("#embloading");
  fetch("/api/embedding").then((r) => r.ok ? r.json() : Promise.reject(r.statusText)).then((d) => {
    data = d;
    if (loading) loading.textContent = "drawing " + d.ids.length.toLocaleString("en") + " points…";
    draw();
    if (loading) loading.hidden = true;
    if (d.ids.length < d.total) info.textContent = "Showing a sample of " + d.ids.length + " of " + d.total + " images. Nothing selected.";
    el.on("plotly_selected", (ev) => showSelection(ev ? ev.points : []));
    el.on("plotly_click", (ev) => showSelection(ev.points));
    $("#errorsonly").addEventListener("change", draw);
    if ($("#colorby")) $("#colorby").addEventListener("change", draw);
  }).catch((e) => {
    if (loading) loading.hidden = true;
    info.textContent = "cannot load the embedding: " + e; info.className = "error";
  });
}

// ------------------------------------------------------------ dashboard: the operating threshold
// The counts at 1,001 thresholds come from /api/curves once; moving the slider only looks them up
// (no request, no reload) and moves the red ring on both curves to that operating point.
(function thresholdSlider() {
  const slider = $("#threshold");
  if (!slider) return;
  const out = $("#threshold-value");
  let data = null;
  const pct = (v) => (v === null || !isFinite(v)) ? "–" : (100 * v).toFixed(1) + "%";
  function place(svgId, x, y) {
    const svg = document.getElementById(svgId);
    if (!svg) return;
    const ring = svg.querySelector("circle.moving");
    if (!isFinite(x) || !isFinite(y)) { ring.setAttribute("visibility", "hidden"); return; }
    const d = svg.dataset;
    ring.setAttribute("cx", (Number(d.left) + Number(d.width) * x).toFixed(1));
    ring.setAttribute("cy", (Number(d.top) + Number(d.height) * (1 - y)).toFixed(1));
    ring.setAttribute("visibility", "visible");
  }
  function update() {
    const t = Number(slider.value);
    out.textContent = t.toFixed(3);
    if (!data) return;
    const tb = data.table, i = Math.max(0, Math.min(tb.thresholds.length - 1, Math.round(t * (tb.thresholds.length - 1))));
    const tp = tb.tp[i], fp = tb.fp[i], fn = tb.n_pos - tp, tn = tb.n_neg - fp;
    const precision = tp + fp ? tp / (tp + fp) : NaN, recall = tb.n_pos ? tp / tb.n_pos : NaN;
    const fpr = tb.n_neg ? fp / tb.n_neg : NaN, f1 = (2 * tp + fp + fn) ? 2 * tp / (2 * tp + fp + fn) : 0;
    $("#th-tp").textContent = tp; $("#th-fp").textContent = fp; $("#th-fn").textContent = fn; $("#th-tn").textContent = tn;
    $("#th-precision").textContent = pct(precision); $("#th-recall").textContent = pct(recall);
    $("#th-f1").textContent = f1.toFixed(3); $("#th-fpr").textContent = pct(fpr);
    place("roc-chart", fpr, recall);
    place("pr-chart", recall, precision);
    slider.dataset.ready = "1";
  }
  slider.addEventListener("input", update);
  fetch("/api/curves").then((r) => r.ok ? r.json() : Promise.reject(r.statusText)).then((d) => {
    data = d; update();
  }).catch((e) => { out.textContent = "cannot load the curves: " + e; out.className = "error"; });
})();

// ---------------------------------------------------------------------------- concepts
// A concept's review: one POST /api/concept-review/CLASS/K with {"verdict": "object"|"artefact"|null}.
$$(".concept-review").forEach((box) => {
  const out = $(".verdict", box);
  $$("button.cmark", box).forEach((b) => b.addEventListener("click", async () => {
    const verdict = b.dataset.verdict || null;
    const resp = await fetch("/api/concept-review/" + box.dataset.class + "/" + box.dataset.k, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ verdict: verdict }),
    });
    if (!resp.ok) { out.textContent = await resp.text(); out.className = "verdict error"; return; }
    $$("button.cmark", box).forEach((x) => x.classList.toggle("on", !!verdict && x.dataset.verdict === verdict));
    out.className = "verdict";
    out.textContent = verdict ? "saved: " + verdict : "cleared";
  }));
});

// A concept's heatmap over the image, shown where the attribution map goes (its own legend: 0 .. its peak).
function conceptMap(id, c, k, name) {
  const img = $("#overlay"), status = $("#mapstatus"), legend = $("#maplegend");
  const t0 = performance.now();
  status.textContent = "computing the heatmap of " + name + "…";
  status.className = "muted busy";
  img.onerror = () => { status.textContent = "no heatmap of " + name + " (see the server log)"; status.className = "error"; };
  img.onload = () => {
    img.hidden = false;
    img.dataset.key = "concept/" + name;
    if (legend) legend.hidden = true;
    status.textContent = name + " over this image (blue 0 → red: the concept's peak in the image) · " +
      Math.round(performance.now() - t0) + " ms";
    status.className = "muted";
  };
  img.src = "/map/concepts/" + c + "/" + k + "/image/" + id + ".png";
}

// The image page: its prediction split over the predicted class's concepts, computed on demand with the model.
(function decomposition() {
  const box = $("#decomposition");
  if (!box) return;
  const status = $(".status", box), list = $(".shares", box);
  const t0 = performance.now();
  const ticker = setInterval(() => {
    status.textContent = "computing the concept decomposition: " + ((performance.now() - t0) / 1000).toFixed(1) +
      " s so far (the model loads first on the first image)";
  }, 500);
  fetch("/map/concepts/decomposition/" + box.dataset.id).then(async (r) => {
    clearInterval(ticker);
    if (!r.ok) { status.textContent = (await r.text()) || ("error " + r.status); status.className = "status error"; return; }
    const d = await r.json();
    status.textContent = d.text;
    status.className = "status decomposition-text";
    (d.shares || []).forEach(([name, share, c, k, shortcut]) => {
      const row = document.createElement("div");
      row.className = shortcut ? "share shortcut" : "share";
      if (shortcut) row.title = "a suspected shortcut: open the concept to judge it";
      const a = document.createElement("a");
      a.href = "/concepts/" + c + "/" + k;
      a.textContent = name;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = Math.round(100 * share) + "%";
      const cell = document.createElement("div");
      cell.append(bar);
      const val = document.createElement("span");
      val.textContent = Math.round(100 * share) + "%";
      const show = document.createElement("a");  // the concept's heatmap over this image, in the map panel
      show.href = "#";
      show.className = "conceptmap";
      show.textContent = "map";
      show.addEventListener("click", (e) => { e.preventDefault(); conceptMap(box.dataset.id, c, k, name); });
      row.append(a, cell, val, show);
      list.append(row);
    });
  }).catch((e) => { clearInterval(ticker); status.textContent = String(e); status.className = "status error"; });
})();

// ------------------------------------- serve --compare: both models' maps of one image, each with its legend
(function compareMaps() {
  $$(".compare-maps img[data-map]").forEach(async (img) => {
    const legendEl = img.parentElement.querySelector(".maplegend");
    const resp = await fetch(img.dataset.map);
    if (!resp.ok) {
      legendEl.hidden = false;
      legendEl.textContent = (await resp.text()) || ("error " + resp.status);
      return;
    }
    const legend = JSON.parse(resp.headers.get("x-map-legend") || "null");
    img.onload = () => drawLegend(legendEl, legend);
    img.src = URL.createObjectURL(await resp.blob());
  });
})();
