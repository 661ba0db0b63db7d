/* mikata report: draws the lists a click asks for from two embedded JSON tables (no network). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("mk-data").textContent);
  var T = JSON.parse(document.getElementById("mk-thumbs").textContent);
  var PAGE = 120;
  var row = new Map();
  D.ids.forEach(function (id, i) { row.set(id, i); });

  function thumbSrc(id) {
    var s = T[id];
    if (!s) return "";
    return (s[0] === "p" ? "data:image/png;base64," : "data:image/jpeg;base64,") + s.slice(1);
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function info(id) {
    var i = row.get(id);
    if (i === undefined) return null;
    return {label: D.labels[i], pred: D.preds[i], pp: D.pp[i]};
  }

  // static thumbnails (per-class galleries, label issues) reference the table by id
  document.querySelectorAll("img[data-thumb]").forEach(function (img) {
    if (!img.getAttribute("src")) { var s = thumbSrc(img.dataset.thumb); if (s) img.src = s; }
  });

  function thumbFigure(id) {
    var f = el("figure", "thumb");
    var m = info(id);
    f.dataset.id = id;
    if (m && m.label !== m.pred) f.classList.add("wrong");
    var img = el("img");
    img.loading = "lazy";
    img.alt = "image " + id;
    var s = thumbSrc(id);
    if (s) img.src = s;
    f.appendChild(img);
    f.appendChild(el("figcaption", "", "#" + id + (m ? " · " + m.pp.toFixed(2) : "")));
    if (m) f.title = "label " + D.classes[m.label] + ", predicted " + D.classes[m.pred] + " (" + m.pp.toFixed(3) + ")";
    return f;
  }

  /* A titled grid of thumbnails, PAGE at a time ("show more" appends the next page). */
  function showList(panel, title, ids) {
    panel.innerHTML = "";
    panel.appendChild(el("h4", "", title));
    var grid = el("div", "thumb-grid");
    panel.appendChild(grid);
    var shown = 0;
    var more = el("button", "more");
    function page() {
      var frag = document.createDocumentFragment();
      var end = Math.min(ids.length, shown + PAGE);
      for (; shown < end; shown++) frag.appendChild(thumbFigure(ids[shown]));
      grid.appendChild(frag);
      if (shown < ids.length) more.textContent = "show more (" + (ids.length - shown) + " left)";
      else more.remove();
    }
    more.addEventListener("click", page);
    panel.appendChild(more);
    page();
  }

  // ---- confusion cells and confused pairs
  var cellPanel = document.getElementById("cell-list");
  function openCell(t, p, scroll) {
    var ids = D.cells[t + "," + p] || [];
    document.querySelectorAll("td.cell.selected").forEach(function (c) { c.classList.remove("selected"); });
    var td = document.querySelector('td.cell[data-t="' + t + '"][data-p="' + p + '"]');
    if (td) td.classList.add("selected");
    var what = t === p ? D.classes[t] + " predicted correctly" : D.classes[t] + " predicted as " + D.classes[p];
    var total = (D.cell_totals && D.cell_totals[t + "," + p]) || ids.length;
    var head = what + ": " + total + " image" + (total === 1 ? "" : "s") + ", most confident first";
    if (total > ids.length) head += " (the first " + ids.length + " are in this report; `mikata serve` shows all)";
    showList(cellPanel, head, ids);
    if (scroll) cellPanel.scrollIntoView({block: "nearest"});
  }
  document.querySelectorAll("td.cell").forEach(function (td) {
    if (+td.dataset.count > 0) td.addEventListener("click", function () { openCell(+td.dataset.t, +td.dataset.p, true); });
  });
  document.querySelectorAll("button[data-cell]").forEach(function (b) {
    b.addEventListener("click", function () {
      var tp = b.dataset.cell.split(",");
      openCell(+tp[0], +tp[1], false);
      document.getElementById("confusion").scrollIntoView();
    });
  });

  // ---- errors across groups
  var exPanel = document.getElementById("exceptional-list");
  if (exPanel && D.exceptional) showList(exPanel, "most confident first", D.exceptional);

  // ---- embedding scatter on a canvas
  var canvas = document.getElementById("emb-canvas");
  var embXY = null;
  if (canvas && D.emb) {
    var E = D.emb, pad = 14, W = canvas.clientWidth || 720, H = canvas.clientHeight || 520;
    var dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr;
    var ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    embXY = function (k) { return [pad + E.x[k] * (W - 2 * pad), H - pad - E.y[k] * (H - 2 * pad)]; };
    var wrongs = [];
    for (var k = 0; k < E.ids.length; k++) {
      var m = info(E.ids[k]);
      if (!m) continue;
      var xy = embXY(k);
      if (m.label !== m.pred) { wrongs.push(k); continue; }
      ctx.fillStyle = D.colors[m.label];
      ctx.globalAlpha = 0.7;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 2.6, 0, 6.2832); ctx.fill();
    }
    ctx.globalAlpha = 1; ctx.lineWidth = 1.6;
    wrongs.forEach(function (k) {  // errors on top, as crosses in the colour of their true class
      var m = info(E.ids[k]), xy = embXY(k);
      ctx.strokeStyle = D.colors[m.label];
      ctx.beginPath(); ctx.moveTo(xy[0] - 3.5, xy[1] - 3.5); ctx.lineTo(xy[0] + 3.5, xy[1] + 3.5);
      ctx.moveTo(xy[0] + 3.5, xy[1] - 3.5); ctx.lineTo(xy[0] - 3.5, xy[1] + 3.5); ctx.stroke();
    });
    var legend = document.getElementById("emb-legend");
    var present = new Set(D.labels);
    D.classes.forEach(function (name, c) {
      if (!present.has(c)) return;
      var item = el("span");
      var sw = el("span", "swatch"); sw.style.background = D.colors[c];
      item.appendChild(sw); item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    });
    var pick = document.getElementById("emb-pick");
    canvas.addEventListener("click", function (ev) {
      var r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
      var best = -1, bd = 100;  // within 10 px
      for (var k = 0; k < E.ids.length; k++) {
        var xy = embXY(k), dd = (xy[0] - x) * (xy[0] - x) + (xy[1] - y) * (xy[1] - y);
        if (dd < bd) { bd = dd; best = k; }
      }
      if (best < 0) return;
      var id = E.ids[best], m = info(id);
      pick.innerHTML = "";
      pick.appendChild(el("h4", "", "image #" + id));
      var f = thumbFigure(id);
      pick.appendChild(f);
      pick.appendChild(el("p", "", "label " + D.classes[m.label] + " · predicted " + D.classes[m.pred] + " (" + m.pp.toFixed(3) + ")"));
      pick.dataset.id = id;
    });
  }

  // ---- a bigger view of any thumbnail
  var viewer = document.getElementById("viewer"), body = viewer.querySelector(".viewer-body");
  function openViewer(id) {
    var m = info(id);
    body.innerHTML = "";
    var img = el("img"); img.src = thumbSrc(id); img.alt = "image " + id;
    body.appendChild(img);
    body.appendChild(el("h4", "", "image #" + id));
    if (m) body.appendChild(el("p", "", "label " + D.classes[m.label] + " · predicted " + D.classes[m.pred] +
      " (P " + m.pp.toFixed(3) + ")" + (m.label === m.pred ? "" : " — wrong")));
    viewer.hidden = false;
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t.closest && t.closest("figure.thumb")) { openViewer(+t.closest("figure.thumb").dataset.id); return; }
    if (t.matches && t.matches("img.thumb-img")) { openViewer(+t.dataset.thumb); return; }
    if (t === viewer || (t.classList && t.classList.contains("close"))) viewer.hidden = true;
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") viewer.hidden = true; });

  window.mikataReport = {openCell: openCell, embXY: embXY, thumbSrc: thumbSrc};
  window.mikataRenderMs = performance.now();
  document.documentElement.dataset.ready = "1";
})();

/* the operating threshold of a two-class run: the counts at 1,001 thresholds are embedded (mk-threshold);
   moving the slider looks them up and moves the ring on both curves */
(function () {
  "use strict";
  var slider = document.getElementById("threshold"), src = document.getElementById("mk-threshold");
  if (!slider || !src) return;
  var tb = JSON.parse(src.textContent), out = document.getElementById("threshold-value");
  var readout = document.getElementById("threshold-readout");
  function pct(v) { return isFinite(v) ? (100 * v).toFixed(2) + "%" : "–"; }
  function place(id, x, y) {
    var svg = document.getElementById(id);
    if (!svg) return;
    var ring = svg.querySelector("circle.moving"), d = svg.dataset;
    if (!isFinite(x) || !isFinite(y)) { ring.setAttribute("visibility", "hidden"); return; }
    ring.setAttribute("cx", (+d.left + +d.width * x).toFixed(1));
    ring.setAttribute("cy", (+d.top + +d.height * (1 - y)).toFixed(1));
    ring.setAttribute("visibility", "visible");
  }
  function update() {
    var t = +slider.value, i = Math.max(0, Math.min(tb.thresholds.length - 1, Math.round(t * (tb.thresholds.length - 1))));
    var tp = tb.tp[i], fp = tb.fp[i], fn = tb.n_pos - tp, tn = tb.n_neg - fp;
    var precision = tp + fp ? tp / (tp + fp) : NaN, recall = tb.n_pos ? tp / tb.n_pos : NaN, fpr = tb.n_neg ? fp / tb.n_neg : NaN;
    out.textContent = t.toFixed(3);
    readout.textContent = "precision " + pct(precision) + " · recall " + pct(recall) + " · false-positive rate " + pct(fpr) +
      " · positives called " + tp + ", missed " + fn + " · negatives called " + fp + ", passed " + tn;
    place("roc-chart", fpr, recall);
    place("pr-chart", recall, precision);
  }
  slider.addEventListener("input", update);
  update();
})();
