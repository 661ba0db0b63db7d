"""How maps are colored (``display.map_scale``), everywhere a map is drawn: signed maps diverge around a
white zero, unsigned ones run 0..max in jet, all-zero maps are hatched and say so; the pixels are checked.

The maps are real: the MNIST CNN on real digits (Integrated Gradients with its black baseline is exactly
zero on the black background; Grad-CAM of some classes is exactly zero on some digits).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mikata.display import DIVERGING, SEQUENTIAL, colorize, hatch, legend_of_kind, map_scale, overlay_scaled
from test_scan_support import digit_images, mnist_handle, write_folder

WHITE = colorize(np.array([[0.5]]), DIVERGING)[0, 0]  # bwr's middle: (255, 254, 254)


def _zero_gradcam(handle, images, limit: int = 40) -> tuple[int, int]:
    """(image index, class) of a real digit whose Grad-CAM for that class is exactly zero."""
    from mikata.attribution import explain

    for i, img in enumerate(images[:limit]):
        x = handle.preprocess([img])
        for c in range(10):
            if float(explain(handle, x, ["gradcam"], targets=[c])[0].maps.abs().max()) == 0.0:
                return i, c
    raise AssertionError("no all-zero Grad-CAM among the first digits")


@pytest.fixture(scope="module")
def mnist():
    return mnist_handle()


# ----------------------------------------------------------------------------------- the one rule
def test_signed_maps_get_symmetric_limits_and_zero_is_white():
    m = np.zeros((20, 20))
    m[2:5, 2:5], m[10:12, 10:12] = 0.8, -0.2
    s = map_scale(m, signed=True)
    assert s.signed and s.cmap == DIVERGING and (s.low, s.high) == (-0.8, 0.8) and s.empty is None
    rgb = s.colors(m)
    assert (rgb[0, 0] == WHITE).all() and tuple(WHITE) == (255, 254, 254)  # zero: white, not jet's orange
    assert tuple(rgb[3, 3]) == (255, 0, 0)  # +max: red
    r, g, b = (int(v) for v in rgb[11, 11])  # -0.2 of ±0.8: a light blue
    assert b == 255 and r == g and 150 < r < 200
    assert [t for _, t in s.ticks()] == ["\u22120.8", "0", "+0.8"]
    legend = s.legend("tabby")
    assert legend["text"].startswith("\u22120.8 … 0 … +0.8") and "red: evidence for tabby" in legend["text"]
    # the old drawing (min-max into jet) painted the same zero background a strong color
    old = colorize((m - m.min()) / (m.max() - m.min()), "jet")[0, 0]
    assert int(old.max()) - int(old.min()) > 100


def test_unsigned_maps_run_from_zero_to_their_max_in_jet():
    m = np.linspace(0.2, 1.0, 100).reshape(10, 10)  # no pixel is zero: min-max would hide the offset
    s = map_scale(m, signed=False)
    assert (s.low, s.high, s.cmap) == (0.0, 1.0, SEQUENTIAL)
    assert (s.colors(m)[0, 0] != colorize(np.array([[0.0]]), "jet")[0, 0]).any()  # 0.2 is not the bottom color
    assert [t for _, t in s.ticks()] == ["0", "1"]


def test_pixel_maps_clip_at_the_99_5th_percentile_of_their_magnitude():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 0.01, (100, 100))
    m[0, 0] = 5.0  # one hot pixel would take the whole range
    s = map_scale(m, signed=True, saturate=True)
    assert s.clipped and s.high == pytest.approx(np.percentile(np.abs(m), 99.5)) and s.peak == 5.0
    assert s.low == -s.high and "clipped at the 99.5th percentile of |v|" in s.legend()["text"]


def test_an_all_zero_map_is_hatched_and_says_why():
    view = np.full((28, 28, 3), 40, np.uint8)
    s = map_scale(np.zeros((28, 28)), signed=False)
    assert s.empty == "all zero"
    assert s.note("shirt") == "no positive evidence for shirt: the map is all zero"
    assert map_scale(np.zeros((4, 4)), signed=True).note("shirt") == "no evidence either way for shirt: the map is all zero"
    drawn = overlay_scaled(view, np.zeros((28, 28)), s)
    assert (drawn == hatch(view)).all()
    assert len(np.unique(drawn.reshape(-1, 3), axis=0)) == 2  # faded image + gray stripes
    assert not (drawn[..., 2] > drawn[..., 0] + 50).any()  # nothing blue: not "low evidence everywhere"
    assert s.legend("shirt")["note"] == s.legend("shirt")["text"] == s.note("shirt")
    const = map_scale(np.full((4, 4), 0.3))
    assert const.empty == "constant" and "constant (0.3)" in const.note()


def test_the_registry_says_which_maps_are_signed():
    from mikata.attribution import registry

    signed = {n for n in registry.names() if registry.signed_map(n)}
    assert {"integrated-gradients", "deeplift", "grad-x-input", "saliency-signed", "lrp", "occlusion",
            "lime"} <= signed
    assert not signed & {"gradcam", "gradcam++", "saliency", "guided-backprop", "guided-gradcam", "smoothgrad"}
    assert registry.signed_map("smoothgrad", {"base": "grad-x-input"})  # the mean of a signed map
    assert not registry.signed_map("smoothgrad-squared", {"base": "grad-x-input"})
    assert not registry.signed_map("vargrad", {"base": "grad-x-input"})
    assert not registry.signed_map("integrated-gradients", {"reduce": "abssum"})  # a magnitude now


def test_page_legends_describe_each_kind_of_map():
    unsigned, signed = legend_of_kind(False), legend_of_kind(True, saturate=True)
    assert [t for _, t in unsigned["ticks"]] == ["0", "max"] and "hatched" in unsigned["text"]
    assert [t for _, t in signed["ticks"]] == ["\u2212max|v|", "0", "+max|v|"] and "clipped" in signed["text"]
    assert signed["stops"][4] == "#fffefe" and unsigned["stops"][0] == "#000080"  # bwr's white, jet's navy


# --------------------------------------------------------------------------------- explain figure
def _panel_pixels(fig, ax) -> np.ndarray:
    """The rendered RGB pixels inside one axes of a drawn figure."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    box = ax.get_window_extent()
    h = rgba.shape[0]
    y0, y1 = int(h - box.y1) + 2, int(h - box.y0) - 2
    return rgba[y0:y1, int(box.x0) + 2:int(box.x1) - 2, :3]


def test_explain_figure_draws_integrated_gradients_diverging_with_a_white_zero(mnist):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from mikata.attribution.figure import explain_figure

    images, _ = digit_images(2)
    fig = explain_figure(mnist, images[1], ["gradcam", "integrated-gradients"], targets="top1")
    FigureCanvasAgg(fig)
    gradcam_ax, ig_ax = fig.axes[2], fig.axes[4]
    assert "integrated-gradients (signed)" in ig_ax.get_title()
    assert ig_ax.images[-1].get_cmap().name == DIVERGING and gradcam_ax.images[-1].get_cmap().name == SEQUENTIAL
    ticks = [t.get_text() for t in fig.axes[5].get_yticklabels()]
    assert len(ticks) == 3 and ticks[1] == "0" and ticks[0] == "\u2212" + ticks[2][1:]  # −v, 0, +v
    px = _panel_pixels(fig, ig_ax)
    corner = px[:8, :8].reshape(-1, 3).astype(int)  # black background, IG exactly 0 there
    assert (corner.max(1) - corner.min(1) <= 3).all()  # neutral gray: white at alpha 0.5 over black
    assert (np.abs(corner - 128) <= 4).all()
    g = _panel_pixels(fig, gradcam_ax)[:8, :8].reshape(-1, 3).astype(int)
    assert (g[:, 2] - g[:, 0] > 40).all()  # Grad-CAM's zero corner: jet's blue, unsigned as before


def test_explain_figure_says_when_a_map_is_all_zero(mnist):
    from mikata.attribution.figure import explain_figure

    images, _ = digit_images(40)
    i, c = _zero_gradcam(mnist, images)
    fig = explain_figure(mnist, images[i], ["gradcam"], targets=[c])
    texts = [t.get_text().replace("\n", " ") for t in fig.axes[2].texts]
    assert texts == [f"no positive evidence for {c}: the map is all zero"]
    assert len(fig.axes) == 4 and not fig.axes[3].get_visible()  # the colorbar of nothing is hidden


# ---------------------------------------------------------------------------- web app map PNGs
@pytest.fixture(scope="module")
def app_run(tmp_path_factory, mnist):
    from fastapi.testclient import TestClient

    from mikata.scanning.scan import scan
    from mikata.server import create_app

    base = tmp_path_factory.mktemp("colors")
    images, labels = digit_images(40)
    write_folder(base / "digits", images, labels)
    scan(mnist, base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    app = create_app(base / "run", token="t0k3n-colors", port=8765, handle=mnist)
    # a black baseline, so Integrated Gradients is exactly zero on the digits' black border
    app.run.maps.options["integrated-gradients"] = {"baseline": "black"}
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    assert client.get("/?token=t0k3n-colors").status_code == 200
    return {"app": app, "client": client, "run": base / "run"}


def _first_id(app_run) -> int:
    return int(app_run["app"].run.overview().data.ids[0])


def test_map_png_of_a_signed_method_is_neutral_where_the_map_is_zero(app_run):
    c, maps = app_run["client"], app_run["app"].run.maps
    i = _first_id(app_run)
    r = c.get(f"/map/{i}.png?method=integrated-gradients")
    assert r.status_code == 200
    legend = json.loads(r.headers["x-map-legend"])
    assert legend["signed"] and legend["cmap"] == DIVERGING and legend["high"] > 0 and legend["low"] == -legend["high"]
    assert [t for _, t in legend["ticks"]][1] == "0" and legend["note"] is None
    assert legend["baseline"] == "black" and legend["text"].endswith("(baseline: black)")
    m = maps.map(i, "integrated-gradients")
    png = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    view = maps.model_view(i).astype(int)
    zero = m == 0
    assert zero.sum() > 100  # the black border of the digit
    expected = np.round(0.5 * WHITE + 0.5 * view[zero])
    assert (np.abs(png[zero] - expected) <= 1).all()  # zero: the image under white, no hue
    assert (png[zero].max(1) - png[zero].min(1) <= 2).all()
    pos = m >= 0.9 * legend["high"]
    assert (png[pos][:, 0] - png[pos][:, 2] > 60).all()  # strong positive evidence: red


def test_map_png_of_an_all_zero_gradcam_is_hatched_and_its_legend_says_so(app_run):
    c, state = app_run["client"], app_run["app"].run
    images, _ = digit_images(40)
    ids = state.overview().data.ids  # digits were written in order, one folder per class
    i, cls = None, None
    for image_id in ids.tolist():
        for k in range(10):
            if not state.maps.map(image_id, "gradcam", k).any():
                i, cls = image_id, k
                break
        if i is not None:
            break
    assert i is not None, "no all-zero Grad-CAM in this run"
    r = c.get(f"/map/{i}.png?method=gradcam&cls={cls}")
    legend = json.loads(r.headers["x-map-legend"])
    assert legend["note"] == f"no positive evidence for {cls}: the map is all zero" and legend["empty"] == "all zero"
    png = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert (png == hatch(state.maps.model_view(i))).all()


def test_grid_and_issue_pages_carry_a_legend_of_their_tiles(app_run):
    c = app_run["client"]
    grid = c.get("/grid?true=-1&pred=-1&map=gradcam").text
    assert 'id="gridlegend"' in grid and "each map from 0 (blue) to its own max (red)" in grid
    assert "hatched: the map is all zero" in grid
    assert 'id="gridlegend"' not in c.get("/grid?true=-1&pred=-1").text  # images only: no legend
    image_page = c.get(f"/image/{_first_id(app_run)}").text
    assert 'id="maplegend"' in image_page


# ------------------------------------------------------------------------------------ report
def test_report_maps_use_the_same_colors_and_say_when_a_map_is_all_zero(app_run, tmp_path, mnist):
    from mikata.presentation.maps import MapService, map_scale_of
    from mikata.analysis.overview import overview
    from mikata.runs.store import RunStore
    from mikata.report import write_report

    run = app_run["run"]
    ov = overview(run, n=3)
    worst = min(ov.classes, key=lambda v: (v.f1, v.index))
    target = worst.most_class_like[0]
    with RunStore.open(run, annotate=True) as store:  # a cached all-zero Grad-CAM, as a class without evidence gives
        store.put_map(target, "gradcam", worst.index, "", np.zeros((28, 28), np.float32), 0.0)
    out = tmp_path / "r.html"
    result = write_report(run, out, methods=("gradcam", "integrated-gradients"), map_classes=1, handle=mnist)
    html = out.read_text(encoding="utf-8")
    assert result.maps > 0
    assert html.count('class="maplegend signed"') == 1 and html.count('class="maplegend"') == 1
    assert f"no positive evidence for {worst.name}: the map is all zero" in html
    # the report's IG overlay is the web app's, pixel for pixel
    with MapService(run, handle=mnist) as service:
        other = worst.most_class_like[1] if len(worst.most_class_like) > 1 else worst.least_class_like[0]
        m = service.map(other, "integrated-gradients", worst.index)
        assert map_scale_of(m, "integrated-gradients").signed
        png = service.overlay_png(other, "integrated-gradients", worst.index)
    expected = "data:image/png;base64," + __import__("base64").b64encode(png).decode()
    assert expected in html


# ------------------------------------------------------------------------- training plot, percents
def test_training_plot_marks_the_kept_epoch(tmp_path):
    from mikata.training.plot import history_figure, plot_history

    h = {"train_loss": [1.0, 0.6, 0.4, 0.3], "val_loss": [1.1, 0.7, 0.6, 0.7],
         "train_accuracy": [0.5, 0.7, 0.8, 0.9], "val_accuracy": [0.45, 0.65, 0.72, 0.70]}
    fig = history_figure(h, best_epoch=3)
    for ax, metric in zip(fig.axes, ("loss", "accuracy")):
        marks = [line for line in ax.lines if line.get_label() == "kept: epoch 3"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
        ring = [line for line in ax.lines if list(line.get_xdata()) == [3] and line.get_marker() == "o"]
        assert len(ring) == 1 and list(ring[0].get_ydata()) == [h[f"val_{metric}"][2]]
        assert "kept: epoch 3" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert not [line for ax in history_figure(h).axes for line in ax.lines if "kept" in line.get_label()]
    assert plot_history(h, tmp_path / "p.png", best_epoch=3).is_file()


def test_one_percent_formatter_rounds_the_same_everywhere(app_run):
    from mikata.analysis.audit_summary import audit, format_audit
    from mikata.formatting import percent
    from mikata.server.app import _pct

    assert percent(131 / 160) == "81.88%"  # f"{x:.2%}" says 81.87%, f"{100 * x:.2f}%" says 81.88%
    assert [percent(k / 160) for k in (23, 49, 51)] == ["14.38%", "30.63%", "31.88%"]
    assert percent(131 / 160, 1) == _pct(131 / 160) == "81.9%" and percent(float("nan")) == "–"
    assert percent(1.0) == "100.00%" and percent(0.0) == "0.00%"
    run = app_run["run"]
    acc = app_run["app"].run.overview().accuracy
    text = format_audit(audit(run))
    assert f"accuracy {percent(acc)}" in text
    assert f'<div class="big">{percent(acc, 1)}</div>' in app_run["client"].get("/").text


def test_explain_refuses_an_unknown_colormap_before_loading_the_model(tmp_path, capsys):
    from mikata.cli import main

    assert main(["explain", "efficientnet-lite0", str(tmp_path / "x.png"), "--signed-cmap", "rdbu",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown signed colormap 'rdbu'" in err and "RdBu" in err


def test_report_training_charts_mark_the_kept_epoch(tmp_path, mnist):
    from mikata.models.loading import save_checkpoint
    from mikata.report.build import training_best_epoch
    from mikata.report.svg import line_chart

    h = mnist_handle()
    h.metadata["architecture"] = "test_scan_support:mnist_handle"  # as test_report saves it
    ckpt = save_checkpoint(h, tmp_path / "m.safetensors",
                           extra={"training": {"history": {"val_loss": [1.0, 0.5, 0.7]}, "best_epoch": 2}})
    assert training_best_epoch({"model_spec": str(ckpt)}, tmp_path) == 2
    plain = save_checkpoint(h, tmp_path / "plain.safetensors")
    assert training_best_epoch({"model_spec": str(plain)}, tmp_path) is None
    svg = line_chart({"val loss": [1.0, 0.5, 0.7]}, title="loss", mark=2, mark_label="kept: epoch 2")
    assert svg.count('<g class="mark">') == 1 and "kept: epoch 2" in svg
    xs = [float(v) for v in __import__("re").findall(r'<circle cx="([\d.]+)"', svg)]
    assert f'x1="{xs[1]:.1f}" x2="{xs[1]:.1f}"' in svg  # on the second epoch's points
    assert '<g class="mark">' not in line_chart({"val loss": [1.0, 0.5]}, mark=5)  # outside the epochs: none


def test_featurevis_gallery_takes_labels_and_log_from_the_pngs_as_data_only(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from mikata.runs.attachments import featurevis_gallery
    from mikata.featurevis.optimize import Rendering

    g = torch.Generator().manual_seed(0)
    log = [{"level": 1, "iteration": i, "mean": 0.1 * i, "units": [0.1 * i, 0.2 * i], "size": [16, 16]}
           for i in range(1, 4)]
    Rendering(torch.rand(2, 3, 16, 16, generator=g), ["zebra", "castle"], log).save(tmp_path / "featurevis" / "a")
    hostile = tmp_path / "featurevis" / "b"
    hostile.mkdir()
    info = PngInfo()
    info.add_itxt("mikata-rendering", json.dumps({"units": [{"file": "0.png", "label": {"__import__": "os"}},
                                                            {"file": 3, "label": "x"}]}))
    Image.new("RGB", (8, 8)).save(hostile / "grid.png", pnginfo=info)
    Image.new("RGB", (8, 8)).save(hostile / "0.png")
    (hostile / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    a, b = featurevis_gallery(tmp_path)
    assert [label for _, label in a["units"]] == ["castle", "zebra"]  # sorted by file name
    assert a["log"].splitlines()[0].startswith("iteration") and len(a["log"].splitlines()) == 2 + len(log)
    assert [label for _, label in b["units"]] == ["0", "1"] and b["log"] is None  # non-strings ignored
