"""A data scientist's notebook, executed in a fresh Jupyter kernel and opened in Chromium.

The notebook is built here in code (nbformat): load -> predict -> explain several images -> visualize -> train
(tiny) -> scan -> open_run -> filter -> show -> issues -> curves -> overlay -> export. It runs with
nbclient in a fresh ``python3`` kernel (no ``%matplotlib inline``, no ipywidgets), and then:

- every long step (train, scan) leaves at most one progress output (one line that rewrote itself),
  no ``\\r`` or cursor-up codes and no ``TqdmWarning``; no cell writes a warning to stderr;
- every result a cell returns shows as a picture (image/png) or a table (text/html);
- the notebook exported to HTML (nbconvert) and opened in headless Chromium shows the pictures and
  tables, and never the text ``<Figure size``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_support import child_env

ROOT = Path(__file__).resolve().parents[1]

SETUP = f'''
import sys
sys.path.insert(0, {str(ROOT / "src")!r})  # this checkout's mikata, whatever is installed
import tempfile
from pathlib import Path
import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_digits
import mikata

work = Path(tempfile.mkdtemp(prefix="mikata-nb-"))
photos = []
for name, pixels in (("chelsea", skdata.chelsea()), ("coffee", skdata.coffee()), ("<b onclick=x>rocket", skdata.rocket())):
    photos.append(work / f"{{name}}.png")
    Image.fromarray(pixels).save(photos[-1])
digits = load_digits()
folder = work / "digits"
for c in (0, 1, 3, 7):
    (folder / f"digit_{{c}}").mkdir(parents=True)
    for k, i in enumerate(np.flatnonzero(digits.target == c)[:30]):
        pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)
        name = "<img src=x onerror=alert(1)>.png" if (c, k) == (3, 0) else f"{{k:03d}}.png"
        Image.fromarray(pixels).save(folder / f"digit_{{c}}" / name)
'''

CELLS = [
    ("setup", SETUP),
    ("load", 'handle = mikata.load_model("efficientnet-lite0")\nhandle'),
    ("predict", "mikata.predict(handle, photos, top=3)"),
    ("explain", 'mikata.explain(handle, photos[:2], ["gradcam", "guided-gradcam"], targets="top2")'),
    ("figure", 'explanation = mikata.explain(handle, photos[2], ["gradcam"])\nexplanation.figure(0)'),
    ("visualize", 'mikata.visualize(handle, classes=["zebra", "<castle>"[1:-1]], '
                  'options=mikata.RenderOptions(size=64, steps=6))'),
    ("train", 'result = mikata.train(folder, "efficientnet-lite0", work / "digits.safetensors", epochs=2, batch_size=16,\n'
              '                      lr=0.01, input_size=32, freeze_until="blocks.11", threads=1)\nresult'),
    ("scan", 'digits_model = mikata.load_model(str(work / "digits.safetensors"))\n'
             'summary = mikata.scan(digits_model, folder, work / "run", batch_size=32, workers=0)\nsummary'),
    ("open_run", 'run = mikata.open_run(work / "run", model=digits_model)\nrun'),
    ("filter", 'df = run.to_pandas()\nhard = df.sort_values("label_prob").head(6)\nhard[["id", "path", "label", "predicted", "label_prob"]]'),
    ("show", 'run.show(hard, map="gradcam")'),
    ("show_view", 'run.show(run.view.select(classes=["digit_3"]), limit=8)'),
    ("issues", "run.issues()"),
    ("curves", 'run.curves("digit_3")'),
    ("overlay", 'run.overlay(int(hard["id"].iloc[0]), "gradcam")'),
    ("images", 'run.images(hard["id"].tolist()[:3])'),
    ("export", 'out = mikata.export_run(work / "run", work / "rows.parquet")\nimport pandas as pd\npd.read_parquet(out).head(3)'),
]
LONG_STEPS = {"visualize": "visualize:", "train": "train:", "scan": "scan:"}
RESULT_CELLS = [name for name, _ in CELLS if name != "setup"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"name": name}) for name, source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder = tmp_path_factory.mktemp("notebook")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute(env=child_env())
    nbformat.write(nb, folder / "tour.ipynb")
    return nb, folder


def _outputs(nb) -> dict[str, list[dict]]:
    return {c.metadata["name"]: c.get("outputs", []) for c in nb.cells}


def _text(o: dict) -> str:
    if o.get("output_type") == "stream":
        return o.get("text", "")
    return o.get("data", {}).get("text/plain", "") if "data" in o else ""


def test_the_notebook_runs_without_errors_or_warnings(executed):
    nb, _ = executed
    outputs = _outputs(nb)
    errors = [(n, o.get("ename"), o.get("evalue")) for n, outs in outputs.items() for o in outs
              if o["output_type"] == "error"]
    assert errors == []
    for name, outs in outputs.items():
        stderr = "".join(o["text"] for o in outs if o["output_type"] == "stream" and o["name"] == "stderr")
        assert "warning" not in stderr.lower() and "warn(" not in stderr, (name, stderr)
        for o in outs:
            assert "\x1b[" not in _text(o) and "\r" not in _text(o), (name, _text(o)[:200])


def test_each_long_step_leaves_one_progress_line(executed):
    nb, _ = executed
    outputs = _outputs(nb)
    for name, desc in LONG_STEPS.items():
        # progress: the display that rewrites itself, or any tqdm-style bar text; a one-time note (the
        # up-front cost estimate of train, on stderr) is not a progress line, but it comes once at most
        lines = [o for o in outputs[name] if (o["output_type"] == "display_data" and _text(o).startswith(desc))
                 or "%|" in _text(o)]
        notes = [line for o in outputs[name] if o["output_type"] == "stream"
                 for line in o["text"].splitlines() if line.startswith(desc)]
        assert len(notes) == len(set(notes)) and len(notes) <= 1, (name, notes)
        assert len(lines) <= 1, (name, [_text(o) for o in lines])
        assert lines, f"{name}: no progress line at all"
        final = _text(lines[0])
        assert "done" in final and "\n" not in final.strip(), final  # the line rewrote itself to its end state
    assert "2 images" in _text(next(o for o in outputs["visualize"] if _text(o).startswith("visualize:")))
    # Python says what the CLI says: the preprocessing the model applies, as one notice
    stderr = "".join(o.get("text", "") for o in outputs["explain"] + outputs["predict"] + outputs["load"]
                     if o["output_type"] == "stream")
    assert "CAM layer:" in stderr and "preprocessing:" in stderr
    # a checkpoint scanned on its own training folder: Python says it keeps to the held-out split
    scan_err = "".join(o.get("text", "") for o in outputs["scan"] if o["output_type"] == "stream")
    assert "scanning the held-out splits of" in scan_err


def test_every_result_displays_as_a_picture_or_a_table(executed):
    nb, _ = executed
    outputs = _outputs(nb)
    for name in RESULT_CELLS:
        results = [o for o in outputs[name] if o["output_type"] == "execute_result"]
        assert len(results) == 1, name
        kinds = set(results[0]["data"])
        assert kinds & {"image/png", "text/html"}, (name, kinds)
        assert not _text(results[0]).startswith("<Figure size"), name
    html_of = {n: next(o for o in outputs[n] if o["output_type"] == "execute_result")["data"].get("text/html", "")
               for n in RESULT_CELLS}
    assert html_of["explain"].count("<img") == 2  # one row per image
    assert html_of["show"].count("<img") == 6 and "mikata-legend" in html_of["show"]
    assert html_of["curves"].count("<img") == 1 and "AUROC" in html_of["curves"]
    assert "<img" in html_of["train"] and "validation accuracy" in html_of["train"]
    assert "flagged" in html_of["issues"] and "<table" in html_of["issues"]
    assert "mikata-legend" in html_of["overlay"]
    # hostile names from files are escaped everywhere they show
    everything = "".join(html_of.values())
    assert "<img src=x onerror" not in everything and "<b onclick" not in everything
    assert "&lt;b onclick=x&gt;rocket.png" in html_of["predict"]


def test_the_exported_notebook_shows_pictures_and_tables_in_chromium(executed, browser):
    nbconvert = pytest.importorskip("nbconvert")
    from browser_support import new_page, screenshot

    nb, folder = executed
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    page_file = folder / "tour.html"
    page_file.write_text(body, encoding="utf-8")
    assert "&lt;Figure size" not in body and "<Figure size" not in body
    page = new_page(browser)
    page.goto(page_file.as_uri())
    shown = page.evaluate("""() => ({
        images: [...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length,
        broken: [...document.querySelectorAll('img')].filter(i => !(i.complete && i.naturalWidth > 0)).length,
        tables: document.querySelectorAll('table').length,
        text: document.body.innerText,
        alerts: window.__alerts || 0,
    })""")
    screenshot(page, "notebook-tour")
    assert shown["broken"] == 0
    # 3 thumbnails + 2 explanation rows + 1 figure + 1 training curve + 6 gallery maps + 8 gallery images
    # + issue thumbnails + the curves + the overlay + 3 images
    assert shown["images"] >= 26, shown["images"]
    assert shown["tables"] >= 7, shown["tables"]  # predict, train, scan, run, filter, issues, curves, export
    assert "<Figure size" not in shown["text"] and "TqdmWarning" not in shown["text"]
    assert re.search(r"done, \d+/\d+ epoch", shown["text"])
    assert [p for p in page.problems if "alert" in p or "page error" in p] == []
