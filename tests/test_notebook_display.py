"""Notebook behaviour without a kernel: the progress policy, notices, and every rich display.

The executed-notebook test (``test_notebook.py``) checks the whole tour in a real kernel; these check
each piece against an independent reference (the run's own table, scikit-learn, PIL) and with hostile
names (file and class names are data: they must come out escaped).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mikata
from mikata.errors import MikataError
from mikata import progress as P
from test_scan_support import digit_images, mnist_handle, write_folder

EVIL = "<img src=x onerror=alert(1)>"


# ------------------------------------------------------------------ progress in a notebook
class _FakeHandle:
    def __init__(self, log: list, data: dict):
        self.log = log
        log.append(("display", data["text/plain"]))

    def update(self, data: dict, raw: bool = False) -> None:
        self.log.append(("update", data["text/plain"]))


@pytest.fixture()
def notebook(monkeypatch):
    """Progress believes it runs in a Jupyter kernel without ipywidgets; displays are recorded."""
    import IPython.display

    log: list = []
    monkeypatch.setattr(P, "_in_notebook", lambda stream: True)
    monkeypatch.setattr(P, "_has_widgets", lambda: False)
    monkeypatch.setattr(P, "output_mode", lambda stream=None: "bar")
    monkeypatch.setattr(P, "NOTEBOOK_GAP_S", 0.0)
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False, display_id=False: _FakeHandle(log, data))
    return log


def test_a_notebook_step_is_one_line_that_rewrites_itself(notebook):
    stream = io.StringIO()
    with P.Progress(3, "train: 90 images", "epoch", file=stream) as outer:
        for epoch in range(3):
            with P.Progress(4, f"train: epoch {epoch + 1}/3", "batch", file=stream) as inner:
                for _ in range(4):
                    inner.update(1)
                    inner.set_postfix("loss 0.5")
            outer.update(1)
    displays = [t for kind, t in notebook if kind == "display"]
    assert len(displays) == 1  # the nested epochs' bars draw on the outer line
    texts = [t for _, t in notebook]
    assert any("train: epoch 2/3: 3/4 batch (loss 0.5)" in t for t in texts)  # the nested step on the line
    assert texts[-1].startswith("train: 90 images: done, 3/3 epoch in")
    assert all("\n" not in t and "\r" not in t and "\x1b" not in t for t in texts)
    assert stream.getvalue() == ""  # nothing on stderr: no estimate line, no tqdm


def test_one_line_joins_the_steps_of_one_call(notebook):
    @P.one_line
    def call():
        for name in ("decode", "cache", "epochs"):
            with P.Progress(2, f"train: {name}", "item") as bar:
                bar.update(2)
        return "ok"

    assert call() == "ok"
    assert [k for k, _ in notebook].count("display") == 1
    assert notebook[-1][1].startswith("train: epochs: done, 2/2 item")
    call()  # a second call draws its own line
    assert [k for k, _ in notebook].count("display") == 2


def test_a_text_bar_counts_and_says_the_time_left(notebook):
    clock = iter(np.arange(0.0, 100.0, 1.0))
    bar = P.Progress(10, "scan", "img", clock=lambda: float(next(clock)))
    bar.update(5)
    line = notebook[-1][1]
    assert re.match(r"scan: #{10}\.{10}  50% 5/10 img, \d", line) and "left" in line
    bar.close()


def test_enabled_none_shows_a_bar_only_where_one_shows(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(P, "output_mode", lambda s=None: "lines")
    bar = P.Progress(4, "visualize", "step", enabled=None, file=stream)
    for _ in range(4):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""  # a log file gets no lines from a Python default
    bar = P.Progress(4, "visualize", "step", enabled=True, file=stream)
    bar.update(4)
    bar.close()
    assert "visualize: done, 4/4 step" in stream.getvalue()


def test_quiet_tqdm_import_hides_only_the_ipywidgets_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with P.quiet_tqdm_import():
            warnings.warn("IProgress not found. Please update jupyter and ipywidgets.")
            warnings.warn("something else")
    assert [str(w.message) for w in caught] == ["something else"]


# ------------------------------------------------------------------ notices
def test_a_notice_is_a_log_record_and_a_stderr_line_only_where_nothing_logs(capsys, caplog):
    bare = logging.getLogger("mikata.test_notice_bare")
    bare.propagate = False  # no handler anywhere: a notebook without logging set up
    thing = object()
    P.notice("CAM layer: %s", "head", logger=bare, once=thing)
    P.notice("CAM layer: %s", "head", logger=bare, once=thing)  # the same thing again: said once
    assert capsys.readouterr().err == "mikata: CAM layer: head\n"
    with caplog.at_level(logging.INFO, logger="mikata"):
        P.notice("preprocessing: %s", "whole image", logger="mikata.test_notice")
    assert "preprocessing: whole image" in caplog.text  # configured logging gets the record ...
    assert capsys.readouterr().err == ""  # ... and no second copy on stderr


def test_quiet_ray_logs_restores_the_levels():
    from mikata.scanning.ray_scan import RAY_LOGGERS, quiet_ray_logs

    logging.getLogger("ray.data").setLevel(logging.DEBUG)
    restore = quiet_ray_logs()
    assert logging.getLogger("ray.data").level == logging.WARNING
    assert logging.getLogger("ray.widgets").level >= logging.WARNING  # "Missing packages: ['ipywidgets']"
    restore()
    assert logging.getLogger("ray.data").level == logging.DEBUG
    assert set(RAY_LOGGERS) >= {"ray.data", "ray.widgets"}
    logging.getLogger("ray.data").setLevel(logging.NOTSET)


# ------------------------------------------------------------------ displays
@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """40 real digits scanned by the real MNIST CNN; one file is named like an HTML tag."""
    base = tmp_path_factory.mktemp("hostile")
    images, truth = digit_images(40)
    paths = write_folder(base / "d", images, truth)
    evil = paths[3].parent / f"{EVIL}.png"
    paths[3].rename(evil)
    handle = mnist_handle()
    summary = mikata.scan(handle, base / "d", base / "run", batch_size=16, workers=0, gradcam=True, progress=False)
    return {"run": mikata.open_run(base / "run", model=handle), "summary": summary, "handle": handle, "base": base}


def _no_raw(html: str) -> None:
    assert EVIL not in html and "<img src=x" not in html


def test_show_gives_the_runs_rows_with_escaped_names(hostile_run):
    run = hostile_run["run"]
    df = run.to_pandas()
    picked = df.sort_values("label_prob").head(5)
    evil_id = int(df.loc[df["path"].str.contains("onerror"), "id"].iloc[0])
    ids = picked["id"].tolist() + [evil_id]
    g = run.show(ids)
    assert g.ids == ids and len(g) == 6
    rows = df.set_index("id")
    for card in g.cards:  # the independent reference: the run's own table
        assert card.label == rows.loc[card.id, "label"] and card.predicted == rows.loc[card.id, "predicted"]
        assert card.probability == pytest.approx(rows.loc[card.id, "pred_prob"], abs=1e-6)
        assert Image.open(io.BytesIO(card.picture)).size[0] > 0
    html = g._repr_html_()
    _no_raw(html)
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html and html.count("<img ") == 6
    assert run.show(picked).ids == picked["id"].tolist()  # a DataFrame: its id column, in order
    view = run.view.select(classes=["3"])
    assert run.show(view).ids == df.loc[df["label"] == "3", "id"].tolist()
    missing = run.show([ids[0], 10**9])
    assert missing.missing == [10**9] and missing.ids == [ids[0]]
    with pytest.raises(MikataError, match="'id' column"):
        run.show(picked.drop(columns=["id"]))


def test_show_with_maps_draws_the_overlays_and_one_legend(hostile_run, tmp_path):
    run = hostile_run["run"]
    ids = run.to_pandas()["id"].tolist()[:3]
    g = run.show(ids, map="gradcam")
    assert g.map == "gradcam" and g.legend is not None and not g.legend["signed"]
    for card in g.cards:
        assert card.picture == run.maps_service.overlay(card.id, "gradcam")[0]  # the run's own overlay PNG
    html = g._repr_html_()
    assert "mikata-legend" in html and html.count("<img ") == 3
    page = g.save(tmp_path / "g.html")
    assert page.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_overlay_stays_a_pil_image_and_shows_its_caption_and_legend(hostile_run):
    run = hostile_run["run"]
    i = int(run.to_pandas()["id"].iloc[0])
    o = run.overlay(i, "gradcam")
    assert isinstance(o, Image.Image) and o.size == (28, 28)
    assert o.legend["method"] == "gradcam" and o.legend["class"] in run.class_names
    html = o._repr_html_()
    assert "<figcaption>" in html and f"#{i} " in html and "mikata-legend" in html


def test_issues_show_a_table_of_counts_with_the_worst_images(hostile_run):
    run = hostile_run["run"]
    found = run.issues()
    html = found._repr_html_()
    _no_raw(html)
    for t in found.types.values():  # every type with its count, as the audit counts it
        assert re.search(rf"<td>{t.name}</td><td>{int(t.flag.sum())}</td>", html)
    flagged = sum(len(t.worst(4)) for t in found.types.values())
    assert html.count("<img ") == flagged
    assert len(repr(found)) < 1000


def test_images_are_a_captioned_list_of_pil_images(hostile_run):
    run = hostile_run["run"]
    ids = run.to_pandas()["id"].tolist()[:2]
    imgs = run.images(ids)
    assert isinstance(imgs, list) and all(isinstance(im, Image.Image) for im in imgs)
    assert imgs._repr_html_().count("<img ") == 2 and f"#{ids[0]} " in imgs._repr_html_()


def test_scan_summary_and_predictions_escape_file_names(hostile_run, tmp_path):
    s = hostile_run["summary"]
    s.skipped_files = [(f"/data/{EVIL}.jpg", "not an image")]
    html = s._repr_html_()
    _no_raw(html)
    assert f"<td>{s.computed}</td>" in html and "not an image" in html
    good = Path(hostile_run["base"]) / "d" / "0"
    files = sorted(good.iterdir())[:2] + [tmp_path / f"{EVIL}.png"]
    files[-1].write_bytes(b"not a png")
    preds = mikata.predict(hostile_run["handle"], files, top=2)
    html = preds._repr_html_()
    _no_raw(html)
    assert html.count("<img ") == 2 and html.count("<tr>") == 4  # header + 3 rows, the bad one with its error
    assert preds[-1].error and preds[0].top[0][0] in html


def test_curves_show_the_plot_with_sklearns_numbers():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mikata.analysis.binary import curves_from_scores

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = np.clip(y * 0.3 + rng.normal(0.4, 0.25, 200), 0, 1)
    c = curves_from_scores(y, score, positive=1, class_names=["<b>neg</b>", EVIL])
    html = c._repr_html_()
    _no_raw(html)
    assert "<b>neg</b>" not in html
    assert f"{roc_auc_score(y, score):.4g}" in html and f"{average_precision_score(y, score):.4g}" in html
    png = c._repr_png_()
    assert Image.open(io.BytesIO(png)).size == (800, 360)
    assert repr(c).startswith("Curves(") and len(repr(c)) < 300


def test_an_explanation_shows_one_row_per_image_and_figures_are_pictures(tmp_path):
    handle = mnist_handle()
    images, _ = digit_images(3)
    paths = []
    for k, im in enumerate(images):
        paths.append(tmp_path / (f"{EVIL}.png" if k == 1 else f"{k}.png"))
        im.save(paths[-1])
    ex = mikata.explain(handle, paths, ["gradcam", "saliency"])
    html = ex._repr_html_()
    _no_raw(html)
    assert html.count("<img ") == 3
    fig = ex.figure(2)
    assert not repr(fig).startswith("<Figure size") and hasattr(fig, "_repr_png_")
    assert Image.open(io.BytesIO(fig._repr_png_())).size == tuple(int(v) for v in fig.get_size_inches() * fig.dpi)
    assert Image.open(io.BytesIO(ex._repr_png_())).format == "PNG"


def test_train_result_shows_its_numbers_and_curve(tmp_path):
    from mikata.training.loop import TrainResult

    history = {"train_loss": [1.0, 0.5], "train_accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7],
               "val_accuracy": [0.4, 0.7], "epoch_seconds": [1.0, 1.0]}
    r = TrainResult(tmp_path / "m.safetensors", tmp_path / "m.training.png", history, ["cat", EVIL], 2, 0.7, None, 2,
                    False)
    html = r._repr_html_()
    _no_raw(html)
    assert "<td>validation accuracy</td><td>0.7</td>" in html and html.count("<img ") == 1
    assert hasattr(r.figure(), "_repr_png_")


def test_a_model_handle_shows_a_table():
    h = mnist_handle()
    h.class_names = [EVIL] + h.class_names[1:]
    html = h._repr_html_()
    _no_raw(html)
    assert "<td>default layer</td><td>conv_layers.6</td>" in html


def test_a_notice_about_an_object_does_not_keep_it_alive(capsys):
    import gc
    import weakref

    class Thing:
        pass

    bare = logging.getLogger("mikata.test_notice_alive")
    bare.propagate = False
    thing = Thing()
    ref = weakref.ref(thing)
    P.notice("about a thing", logger=bare, once=thing)
    del thing
    gc.collect()
    assert ref() is None  # a model handle a notice was about is freed with the notebook's last reference
    P.notice("about a thing", logger=bare, once=Thing())
    assert capsys.readouterr().err.count("mikata: about a thing") == 2


def test_with_ipywidgets_one_call_is_one_widget(monkeypatch, notebook):
    import tqdm.notebook

    made: list = []

    class FakeWidget:
        def __init__(self, total=None, desc="", unit="it", leave=True):
            self.total, self.desc, self.unit, self.n, self.closed = total, desc, unit, 0, False
            made.append(self)

        def update(self, n=1):
            self.n += n

        def reset(self, total=None):
            self.total, self.n = total, 0

        def set_description(self, desc, refresh=True):
            self.desc = desc

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(P, "_has_widgets", lambda: True)
    monkeypatch.setattr(tqdm.notebook, "tqdm", FakeWidget)

    @P.one_line
    def call():
        for name, total in (("decode", 3), ("epochs", 2)):
            with P.Progress(total, f"train: {name}", "item") as bar:
                with P.Progress(5, "inner", "batch") as inner:  # nested: shown on the widget, no widget of its own
                    inner.update(5)
                bar.update(total)
        assert not made[0].closed  # still the call's line

    call()
    assert len(made) == 1 and made[0].closed
    assert made[0].desc == "train: epochs" and made[0].n == 2 and made[0].total == 2
    assert notebook == []  # no text line beside the widget
