"""On-demand maps cached in the RunStore, safe id -> file resolution, thumbnails and label reviews."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import numpy as np
import pytest

from mikata.presentation.maps import MapService
from mikata.presentation.media import UnknownImageError, data_uri, image_file, thumbnail
from mikata.runs.store import RunStore, RunStoreError
from mikata.attribution import explain
from mikata.data.images import load_image
from test_scan_support import digit_images, mnist_handle, write_folder


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """30 real digits, plus a symlink inside the data folder that points outside it."""
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("mapsrun")
    images, labels = digit_images(30)
    write_folder(base / "digits", images, labels)
    secret = base / "outside.png"
    images[0].save(secret)
    (base / "digits" / "0" / "escape.png").symlink_to(secret)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=16, workers=0, progress=False)
    return {"run": base / "run", "handle": handle, "base": base}


def _ids(run) -> dict[str, int]:
    with RunStore.open(run) as store:
        return {p.rsplit("/", 1)[-1]: i for i, p in store.rows(columns=("id", "path"), tuples=True)}


def test_map_equals_explain_and_is_cached(small_run, monkeypatch):
    ids = _ids(small_run["run"])
    service = MapService(small_run["run"], handle=small_run["handle"])
    image_id = ids["00003.png"]
    m = service.map(image_id, "gradcam", cls=5)
    h = small_run["handle"]
    x = h.preprocess([load_image(small_run["base"] / "digits" / "3" / "00003.png", "L")])
    ref = explain(h, x, ["gradcam"], targets=[5])[0].maps[0].numpy()
    assert m.shape == (28, 28)
    assert np.allclose(m, ref, rtol=1e-2, atol=1e-3 * float(np.abs(ref).max()))  # stored as float16
    monkeypatch.setattr(service, "_compute", lambda *a: pytest.fail("a cached map was computed again"))
    assert np.array_equal(service.map(image_id, "gradcam", cls="5"), m)
    with RunStore.open(small_run["run"]) as store:
        assert len(store.map_keys(image_id)) == 1
    png = service.overlay_png(image_id, "gradcam", cls=5)
    assert png[:4] == b"\x89PNG" and data_uri(png).startswith("data:image/png;base64,")


def test_a_map_cached_with_one_baseline_is_never_served_for_another(small_run):
    """IG's map depends on its baseline: each baseline is cached under its own key, and each equals
    explain with that baseline (an older run's black-baseline map is not the default mean one)."""
    ids = _ids(small_run["run"])
    image_id = ids["00003.png"]
    h = small_run["handle"]
    x = h.preprocess([load_image(small_run["base"] / "digits" / "3" / "00003.png", "L")])
    got = {}
    for baseline in ("black", "white", None):
        options = {"integrated-gradients": {"baseline": baseline, "steps": 16}} if baseline else \
            {"integrated-gradients": {"steps": 16}}
        service = MapService(small_run["run"], handle=h, options=options)
        got[baseline] = service.map(image_id, "integrated-gradients", cls=3)
        ref = explain(h, x, ["integrated-gradients"], targets=[3], options=options)[0].maps[0].numpy()
        assert np.allclose(got[baseline], ref, rtol=1e-2, atol=1e-3 * float(np.abs(ref).max())), baseline
    assert not np.allclose(got["black"], got["white"]) and not np.allclose(got["black"], got[None])
    with RunStore.open(small_run["run"]) as store:
        keys = {m for m, c, _ in store.map_keys(image_id) if m.startswith("integrated-gradients") and c == 3}
    assert len(keys) == 3 and all('"baseline": ' in k for k in keys)


def test_concurrent_requests_compute_a_map_once(small_run):
    service = MapService(small_run["run"], handle=small_run["handle"])
    calls = []
    real = service._compute

    def counting(*args):
        calls.append(args)
        return real(*args)

    service._compute = counting
    image_id = _ids(small_run["run"])["00007.png"]
    results = [None] * 8
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, service.map(image_id, "saliency", 7)))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(np.array_equal(r, results[0]) for r in results)


def test_default_class_is_the_prediction_and_bad_classes_are_refused(small_run):
    from mikata.errors import ChoiceError

    service = MapService(small_run["run"], handle=small_run["handle"])
    image_id = _ids(small_run["run"])["00001.png"]
    with RunStore.open(small_run["run"]) as store:
        pred = store.image(image_id)["pred"]
    assert service.class_index(None, image_id) == pred
    with pytest.raises(ChoiceError, match="giraffe"):
        service.map(image_id, "gradcam", "giraffe")
    with pytest.raises(ChoiceError):
        service.map(image_id, "gradcam", 10)
    with pytest.raises(ChoiceError, match="method"):
        service.map(image_id, "magic", 1)


def test_image_file_refuses_unknown_ids_and_symlinks_out_of_the_data_folder(small_run):
    ids = _ids(small_run["run"])
    with RunStore.open(small_run["run"]) as store:
        assert image_file(store, ids["00002.png"]).name == "00002.png"
        with pytest.raises(UnknownImageError, match="outside"):
            image_file(store, ids["escape.png"])
        with pytest.raises(UnknownImageError, match="no image"):
            image_file(store, 10**9)
    service = MapService(small_run["run"], handle=small_run["handle"])
    with pytest.raises(UnknownImageError):
        service.map(ids["escape.png"], "gradcam", 0)


def test_thumbnail_keeps_aspect_and_never_upscales(tmp_path, photos):
    from PIL import Image
    import io

    t = Image.open(io.BytesIO(thumbnail(photos["chelsea"], 96)))
    assert max(t.size) == 96 and t.size[0] > t.size[1] and t.format == "JPEG"  # chelsea is 451x300
    digit = tmp_path / "d.png"
    Image.new("L", (28, 28), 128).save(digit)
    assert Image.open(io.BytesIO(thumbnail(digit, 96))).size == (28, 28)


def test_reviews_are_stored_listed_and_cleared(small_run):
    ids = _ids(small_run["run"])
    with RunStore.open(small_run["run"]) as store:
        with pytest.raises(RunStoreError, match="annotate"):
            store.set_review(ids["00004.png"], "wrong")
    with RunStore.open(small_run["run"], annotate=True) as store:
        store.set_review(ids["00004.png"], "wrong", suggested=9)
        store.set_review(ids["00005.png"], "fine")
        store.set_review(ids["00005.png"], "wrong")  # a change of mind replaces the verdict
        with pytest.raises(RunStoreError, match="verdict"):
            store.set_review(ids["00006.png"], "maybe")
        with pytest.raises(RunStoreError, match="no image"):
            store.set_review(10**9, "fine")
        got = {r["id"]: (r["verdict"], r["suggested"]) for r in store.reviews()}
        assert got == {ids["00004.png"]: ("wrong", 9), ids["00005.png"]: ("wrong", None)}
        store.set_review(ids["00004.png"], None)
        assert [r["id"] for r in store.reviews()] == [ids["00005.png"]]
        n, top, vec = store.version()
        assert n == 31 and top >= n and vec == 31


def test_map_cache_works_while_a_writer_holds_the_run(small_run):
    """A scan appending in another connection does not block reading or caching maps for long."""
    with closing(sqlite3.connect(small_run["run"] / "run.sqlite", isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # a scan's writer, in its own connection, mid-batch
        service = MapService(small_run["run"], handle=small_run["handle"])
        image_id = _ids(small_run["run"])["00008.png"]
        done = threading.Event()
        t = threading.Thread(target=lambda: (service.map(image_id, "gradcam", 8), done.set()))
        t.start()
        t.join(0.5)
        writer.execute("COMMIT")  # the writer's batch commits; the map is stored right after
        t.join(30)
    assert done.is_set()
    with RunStore.open(small_run["run"]) as store:
        assert store.get_map(image_id, "gradcam", 8) is not None
