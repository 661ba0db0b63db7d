"""What the concept surfaces cost against their floor, in one process: the report's Concepts stage and the
web app's first concept page against the ``concept_heatmap`` calls they cannot avoid (one per exemplar
shown), on 120 real digits scanned with the MNIST CNN and a computed atlas (3 concepts per class).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_concepts_ui.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main() -> None:
    from concepts_ui_support import concept_run
    from fastapi.testclient import TestClient

    from mikata.concepts import concept_heatmap
    from mikata.report.concepts import concepts_section
    from mikata.server import create_app

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        got = concept_run(Path(tmp))
        print(f"scan + compute_atlas (120 images, K=3): {time.perf_counter() - t0:.1f} s")
        run, handle, doc = got["run"], got["handle"], got["atlas"].to_json()
        shown = [(e["id"], c["concept"]) for cs in doc["classes"].values() for c in cs for e in c["exemplars"][:4]]
        t0 = time.perf_counter()
        for i, name in shown:
            concept_heatmap(run, i, name, model=handle)
        floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        concepts_section(run, handle.class_names, handle=handle)
        section = time.perf_counter() - t0
        print(f"floor: {len(shown)} concept_heatmap calls {floor:.2f} s; report Concepts stage {section:.2f} s "
              f"({section / floor:.2f}x the floor)")
        client = TestClient(create_app(run, token="t", port=8765, handle=handle), base_url="http://127.0.0.1:8765")
        client.get("/?token=t")
        c = handle.class_names.index(next(iter(doc["classes"])))
        t0 = time.perf_counter()
        client.get(f"/concepts/{c}")
        pngs = [client.get(f"/map/concepts/{c}/{k}/exemplar/{j}.png") for k in range(3) for j in range(4)]
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.get(f"/concepts/{c}")
        for k in range(3):
            for j in range(4):
                client.get(f"/map/concepts/{c}/{k}/exemplar/{j}.png")
        again = time.perf_counter() - t0
        assert all(r.status_code == 200 for r in pngs)
        print(f"app: a class page + its 12 exemplar heatmaps {first:.2f} s first, {again:.2f} s cached")


if __name__ == "__main__":
    main()
