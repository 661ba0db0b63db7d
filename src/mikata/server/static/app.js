// mikata serve: the little JavaScript the pages need (maps on demand, reviews, the embedding scatter).
"use strict";

function $(sel, root) { return (root || document).querySelector(sel); }
function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

// ---------------------------------------------------------------- image page: maps on demand
(function mapForm() {
  const form = $("#mapform");
  if (!form) return;
  const img = $("#overlay"), status = $("#mapstatus");
  let shown = null;
  async function show() {
    const id = form.dataset.id, method = $("#method").value, cls = $("#cls").value;
    const key = method + "/" + cls;
    status.textContent = "computing " + method + " for " + $("#cls").selectedOptions[0].textContent + " …";
    status.className = "muted busy";
    const t0 = performance.now();
    const resp = await fetch("/map/" + id + ".png?method=" + encodeURIComponent(method) + "&cls=" + encodeURIComponent(cls));
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
$$(".review").forEach((box) => {
  $$("button.mark", box).forEach((b) => b.addEventListener("click", async () => {
    const sel = $("select.suggested", box);
    const body = { verdict: b.dataset.verdict || null, suggested: sel && sel.value !== "" ? Number(sel.value) : null };
    const out = $(".verdict", box);
    const resp = await fetch("/api/review/" + box.dataset.id, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!resp.ok) { out.textContent = await resp.text(); out.className = "verdict error"; return; }
    $$("button.mark", box).forEach((x) => x.classList.toggle("on", x === b && !!body.verdict));
    out.className = "verdict";
    out.textContent = body.verdict ? "saved: label " + body.verdict : "cleared";
  }));
});

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
  function draw() {
    const errorsOnly = $("#errorsonly").checked;
    // SVG up to 5,000 points (works without WebGL); WebGL beyond
    const type = data.ids.length <= 5000 ? "scatter" : "scattergl";
    const traces = data.classes.map((name, c) => ({ type: type, mode: "markers", name: name, x: [], y: [],
      customdata: [], text: [], hoverinfo: "text", marker: { size: 4, opacity: 0.7 } }));
    for (let k = 0; k < data.ids.length; k++) {
      if (errorsOnly && data.label[k] === data.pred[k]) continue;
      const t = traces[data.label[k]];
      t.x.push(data.x[k]); t.y.push(data.y[k]); t.customdata.push(k);
      t.text.push("#" + data.ids[k] + " " + data.classes[data.label[k]] + " → " + data.classes[data.pred[k]]);
    }
    const used = traces.filter((t) => t.x.length);
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
  }).catch((e) => {
    if (loading) loading.hidden = true;
    info.textContent = "cannot load the embedding: " + e; info.className = "error";
  });
}
