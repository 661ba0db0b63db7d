"""The scan -> serve map path: one manifest read, one row lookup, one decode per request; the
scan's Grad-CAM is the cached map of the predicted class; RunStore's typed reads and writes."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

import mikata.data.images as images_module
from mikata.presentation.maps import MapService
from mikata.runs.store import RunStore, RunStoreError
from mikata.attribution import explain
from mikata.server import create_app
from test_scan_support import digit_images, mnist_handle, write_folder

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8766"


@pytest.fixture(scope="module")
def gradcam_run(tmp_path_factory):
    """24 real digits scanned with --gradcam (the scan stores each predicted class's Grad-CAM)."""
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("mappath")
    images, labels = digit_images(24)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=8, workers=0, gradcam=True, progress=False)
    return {"run": base / "run", "handle": handle, "base": base}


class Counts:
    """Counts manifest file reads, row lookups and image decodes while installed."""

    def __init__(self, monkeypatch):
        self.manifest = self.rows = self.decodes = 0
        read, image, load = RunStore._read_manifest, RunStore.image, images_module.load_image

        def counted_read(store):
            self.manifest += 1
            return read(store)

        def counted_image(store, *a, **k):
            self.rows += 1
            return image(store, *a, **k)

        def counted_load(*a, **k):
            self.decodes += 1
            return load(*a, **k)

        monkeypatch.setattr(RunStore, "_read_manifest", counted_read)
        monkeypatch.setattr(RunStore, "image", counted_image)
        monkeypatch.setattr(images_module, "load_image", counted_load)

    def reset(self) -> None:
        self.manifest = self.rows = self.decodes = 0


def test_one_uncached_map_request_reads_the_manifest_once_looks_up_one_row_and_decodes_once(gradcam_run,
                                                                                            monkeypatch):
    counts = Counts(monkeypatch)
    app = create_app(gradcam_run["run"], token=TOKEN, port=8766, handle=gradcam_run["handle"])
    client = TestClient(app, base_url=BASE)
    assert client.get(f"/api/overview?token={TOKEN}").status_code == 200  # startup work, and the cookie
    with RunStore.open(gradcam_run["run"]) as store:
        image_id = store.ids()[3]
        pred = store.image(image_id)["pred"]
    other = (pred + 1) % 10  # not the predicted class: not in the scan's cache, so computed
    counts.reset()
    r = client.get(f"/map/{image_id}.png?method=gradcam&cls={other}")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert (counts.manifest, counts.rows, counts.decodes) == (0, 1, 1)  # the manifest was read at startup
    counts.reset()
    assert client.get(f"/map/{image_id}.png?method=gradcam&cls={other}").status_code == 200  # cached now
    assert (counts.manifest, counts.rows, counts.decodes) == (0, 1, 1)  # the view still needs the pixels
    counts.reset()
    assert client.get("/map/999999.png").status_code == 404
    assert counts.rows == 1 and counts.decodes == 0


def test_the_scans_gradcam_is_the_cached_map_of_the_predicted_class(gradcam_run, monkeypatch):
    h = gradcam_run["handle"]
    with RunStore.open(gradcam_run["run"]) as store:
        image_id = store.ids()[5]
        row = store.image(image_id, cam=True)
    assert row["cam"] is not None and row["cam"].shape == (7, 7)
    with MapService(gradcam_run["run"]) as service:  # no handle: the model is never loaded for this map
        monkeypatch.setattr(service, "_compute", lambda *a: pytest.fail("the scan's Grad-CAM was computed again"))
        m = service.map(image_id, "gradcam")  # the predicted class, the scan layer (the default)
        assert service._handle is None
        view = service.overlay_png(image_id, "gradcam")
    assert view[:4] == b"\x89PNG"
    x = h.preprocessing.load([row["path"]])
    ref = explain(h, x, ["gradcam"], targets=[int(row["pred"])])[0].maps[0].numpy()  # (28, 28)
    assert m.shape == ref.shape == (28, 28)
    np.testing.assert_allclose(m, ref, rtol=3e-3, atol=2e-3 * float(np.abs(ref).max()))  # float16 cam


def test_runstore_typed_reads_and_batched_writes(gradcam_run, tmp_path, monkeypatch):
    counts = Counts(monkeypatch)
    with RunStore.open(gradcam_run["run"], annotate=True) as store:
        rows = store.rows(status="ok")
        assert [r["id"] for r in rows] == store.ids() and len(rows) == 24
        assert all(len(r["topk"]) == 5 and r["topk"][0][0] == r["pred"] for r in rows)
        ids = store.ids()
        assert store.paths(ids[:3] + [10**9]) == {r["id"]: r["path"] for r in rows[:3]}
        assert store.paths(ids) == {r["id"]: r["path"] for r in rows}
        assert sum(n for _, _, n in store.confusion_counts()) == 24
        with pytest.raises(RunStoreError, match="unknown row columns"):
            store.rows(columns=("path; DROP TABLE images",))
        m = np.arange(6, dtype=np.float32).reshape(2, 3)
        store.put_maps([(ids[0], "saliency", 1, "", m, 0.1), (ids[1], "saliency", 2, "", -m, 0.2)])
        assert np.array_equal(store.get_map(ids[1], "saliency", 2), -m)
        assert store.map_keys(ids[0]) == [("saliency", 1, "")]
        assert store.review(ids[0]) is None
        store.set_review(ids[0], "wrong", 3)
        assert store.review(ids[0])["verdict"] == "wrong" and store.review(ids[0])["suggested"] == 3
        store.set_review(ids[0], None)
        assert store.manifest is store.manifest and store.identity["gradcam"] is True
    assert counts.manifest == 1  # cached on the store
