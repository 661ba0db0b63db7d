"""Units beside their dataset examples: ranking from the scan's stored channel means, another
layer by one pass, the files, the CLI, the report section and the web app's pages (TestClient;
the Chromium walk is in test_server_browser.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mikata.runs.store import RunStore
from mikata.analysis.units import read_units, unit_examples
from mikata.errors import ChoiceError, MikataError
from mikata.featurevis import RenderOptions
from test_scan_support import digit_images, mnist_handle, write_folder

QUICK = RenderOptions(size=28, steps=4, jitter=2, pad=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("units")
    images, labels = digit_images(120)
    write_folder(base / "digits", images, labels)
    scan(mnist_handle(), base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    return base / "run"


@pytest.fixture(scope="module")
def handle():
    return mnist_handle()


def _means(run, layer_handle=None) -> tuple[list[int], np.ndarray]:
    with RunStore.open(run) as store:
        rows = store.rows(status="ok", columns=("id", "vec_row"), tuples=True)
        return [r[0] for r in rows], np.asarray(store.vectors("channels")[[r[1] for r in rows]], np.float32)


def test_units_are_ranked_by_the_stored_channel_means_and_saved(run, handle):
    res = unit_examples(run, [0, 7], handle=handle, k=4, options=QUICK)
    ids, means = _means(run)
    assert res.source == "scan" and res.layer == "conv_layers.6" and res.map_size == (7, 7)
    for c, examples in res.units:
        want = [ids[i] for i in np.argsort(-means[:, c], kind="stable")[:4]]
        assert [e.image_id for e in examples] == want
        assert [e.activation for e in examples] == sorted((e.activation for e in examples), reverse=True)
        assert examples[0].activation == pytest.approx(float(means[:, c].max()))
    assert res.synthetic.shape == (2, 1, 28, 28)
    assert all(o.shape == (28, 28, 3) and o.dtype == np.uint8 for row in res.overlays for o in row)
    path = res.save()
    card = read_units(run)
    assert path == run / "units" / "units.json" and card["layer"] == "conv_layers.6"
    assert [u["channel"] for u in card["units"]] == [0, 7]
    assert [t["id"] for t in card["units"][1]["top"]] == [e.image_id for e in res.units[1][1]]
    assert all(f.is_file() for u in card["units"] for f in [u["synthetic"], *u["overlays"]])
    assert (run / "units" / "units.png").is_file()


def test_another_layer_is_ranked_by_one_pass_that_matches_a_direct_forward(run, handle):
    from mikata.hooks import capture

    res = unit_examples(run, [3], layer="conv_layers.3", handle=handle, k=2, options=QUICK)
    assert res.source == "computed" and res.map_size == (14, 14)
    best = res.units[0][1][0]
    with RunStore.open(run) as store:
        from mikata.presentation.media import image_file

        x = handle.preprocessing.load([image_file(store, best.image_id)])
    with torch.no_grad(), capture(handle.net, ["conv_layers.3"]) as rec:
        handle.net(x)
    assert best.activation == pytest.approx(float(rec.activations["conv_layers.3"][0, 3].mean()), rel=1e-4)


def test_mistakes_say_what_is_valid(run, handle):
    with pytest.raises(ChoiceError, match="0..127"):
        unit_examples(run, [500], handle=handle, options=QUICK)
    with pytest.raises(ChoiceError, match="conv_layers"):
        unit_examples(run, [0], layer="conv_layers.66", handle=handle, options=QUICK)
    with pytest.raises(MikataError, match="1..16"):
        unit_examples(run, [0], handle=handle, k=0, options=QUICK)


def test_a_tampered_units_json_is_ignored_not_followed(run, handle, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    unit_examples(copy, [1], handle=handle, k=2, options=QUICK).save()
    (copy / "units" / "units.json").write_text(json.dumps({"layer": "x", "units": [{"channel": "../../etc"}]}))
    assert read_units(copy) is None
    (copy / "units" / "units.json").write_text(json.dumps(
        {"layer": "x", "units": [{"channel": 1, "top": [{"id": 1, "activation": 1, "label": "a", "pred": "a"}] * 5}]}))
    assert read_units(copy) is None  # refers to images that are not there


def test_units_cli_report_section_and_web_pages(run, capsys):
    from fastapi.testclient import TestClient

    from mikata.cli import main
    from mikata.report import write_report
    from mikata.server import create_app

    code = main(["-q", "units", str(run), "--channels", "2,5", "--top", "3", "--steps", "3",
                 "--model", "test_scan_support:mnist_handle", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == "conv_layers.6" and [u["channel"] for u in out["units"]] == [2, 5]
    assert len(out["units"][0]["top"]) == 3
    report = write_report(run, run / "report.html", maps=False)
    html = report.path.read_text()
    assert 'id="units"' in html and html.count('class="thumb unit-example"') == 6
    assert 'href="#units"' in html

    app = create_app(run, token="t", handle=mnist_handle())
    client = TestClient(app, base_url="http://127.0.0.1")
    page = client.get("/units?token=t")
    assert page.status_code == 200 and 'href="/units/1"' in page.text
    top = out["units"][1]["top"]
    assert all(f'href="/image/{t["id"]}"' in page.text for t in top)
    unit = client.get("/units/1")
    assert unit.status_code == 200 and f'href="/image/{top[0]["id"]}"' in unit.text
    assert client.get("/units/1/top/2.png").headers["content-type"] == "image/png"
    assert client.get("/units/1/synthetic.png").status_code == 200
    assert client.get("/units/2").status_code == 404 and client.get("/units/1/top/3.png").status_code == 404
    assert 'href="/units"' in client.get("/").text


def test_units_computes_on_the_users_device(run, monkeypatch, capsys):
    """`mikata units --device D` loads the model and computes its maps on D (it was always the CPU)."""
    import mikata.presentation.maps as maps
    import mikata.devices
    from mikata.cli import main

    class Chosen(str):  # the device the command resolved, recognisable wherever it travels
        pass

    real_resolve, real_load = mikata.devices.resolve_device, maps.load_run_model
    monkeypatch.setattr(mikata.devices, "resolve_device", lambda d=None: Chosen(str(real_resolve(d))))
    seen = []

    def load(*args, device=None, **kwargs):
        seen.append(device)
        return real_load(*args, device=device, **kwargs)

    monkeypatch.setattr(maps, "load_run_model", load)
    assert main(["-q", "units", str(run), "--channels", "1", "--top", "2", "--steps", "2", "--device", "cpu",
                 "--model", "test_scan_support:mnist_handle", "--json"]) == 0
    capsys.readouterr()
    assert seen and all(isinstance(d, Chosen) and d == "cpu" for d in seen)
