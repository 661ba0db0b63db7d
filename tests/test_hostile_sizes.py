"""Issue 17, class 4 (images): a file whose resize would explode is refused after the resize plan, before
Pillow allocates it, and it costs only its own result (predict, explain, scan, train, top images)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_support import run_cli
from hostile_support import tiny_rgb
from mikata.data.images import MAX_RESIZED_PIXELS, check_resize_plan
from mikata.data.preprocessing import Preprocessing
from mikata.errors import ImageDecodeError, ImageTooLargeError

STRIPS = [(65000, 1), (1, 65000), (30000, 2), (2, 40000), (60000, 3)]


@pytest.mark.parametrize("size", STRIPS)
def test_a_thin_strip_is_refused_by_the_resize_plan(size):
    pre = Preprocessing(input_size=(224, 224))
    with pytest.raises(ImageTooLargeError, match=r"aspect ratio .* over the limit"):
        pre.preprocess([Image.new("RGB", size)])  # would be gigabytes; refused before the resize


@pytest.mark.parametrize("size", [(4000, 3000), (256, 25600), (1, 1), (5000, 40), (9000, 9000)])
def test_ordinary_and_merely_odd_shapes_pass(size):
    w, h = size
    scale = 256 / min(w, h)
    check_resize_plan(w, h, (max(224, round(w * scale)), max(224, round(h * scale))))


def test_the_limit_is_on_output_pixels():
    check_resize_plan(10, 10, (8192, 8192))
    with pytest.raises(ImageTooLargeError):
        check_resize_plan(10, 10, (8192, 8193))
    with pytest.raises(ImageTooLargeError):
        check_resize_plan(10, 10, (8192, 8192), max_pixels=MAX_RESIZED_PIXELS // 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("sizes")
    good = []
    for i, c in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        p = base / f"good{i}.png"
        Image.fromarray(np.full((300, 260, 3), c, np.uint8)).save(p)
        good.append(p)
    strips = []
    for w, h in STRIPS[:3]:
        p = base / f"strip_{w}x{h}.png"
        Image.new("RGB", (w, h), (90, 90, 90)).save(p)
        strips.append(p)
    return {"base": base, "good": good, "strips": strips}


def test_predict_keeps_the_good_images_of_a_batch_with_a_strip(files):
    from mikata.prediction import predict

    handle = tiny_rgb()
    order = [files["good"][0], files["strips"][0], files["good"][1], files["strips"][1], files["good"][2]]
    got = predict(handle, order, top=2, batch_size=8)
    assert [bool(p.top) for p in got] == [True, False, True, False, True]
    assert all("aspect ratio" in p.error for p in got if not p.top)
    alone = predict(handle, files["good"], top=2)
    assert [p.top for p in got if p.top] == [p.top for p in alone]  # the same results as without the strips


def test_the_loader_names_the_file(files):
    pre = Preprocessing(input_size=(224, 224))
    with pytest.raises(ImageDecodeError, match=str(files["strips"][0])):
        pre.load([files["good"][0], files["strips"][0]])


def test_explain_cli_gives_the_strip_its_own_error_and_exit_1(files, tmp_path, capsys):
    """Through the command line with a real checkpoint-free model spec typed by the user."""
    r = run_cli(capsys, "-q", "explain", "hostile_support:tiny_rgb", str(files["good"][0]), str(files["strips"][0]),
                "--methods", "gradcam", "--out", str(tmp_path / "ex"), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-800:]
    out = json.loads(r.stdout)
    assert "figure" in out[0] and "aspect ratio" in out[1]["error"]


def test_scan_records_the_strip_as_skipped(files, tmp_path):
    from mikata.runs.store import RunStore
    from mikata.scanning.scan import scan

    data = tmp_path / "data"
    for k, p in enumerate(files["good"] + files["strips"]):
        (data / "abcd"[k % 4]).mkdir(parents=True, exist_ok=True)
        (data / "abcd"[k % 4] / p.name).write_bytes(p.read_bytes())
    s = scan(tiny_rgb(), data, tmp_path / "run", batch_size=4, workers=0, progress=False)
    assert s.computed == 3 and s.skipped == 3
    with RunStore.open(tmp_path / "run") as store:
        assert all("aspect ratio" in r for _, r in store.skipped())


def test_top_images_skip_the_strip(files):
    from mikata.featurevis.top_images import top_activating_images

    r = top_activating_images(tiny_rgb(), [str(p) for p in files["good"] + files["strips"]], "0", channels=[0], k=2)
    assert len(r.skipped) == 3 and all("aspect ratio" in why for _, why in r.skipped)
