"""A smoke run of `mikata demo --quick`: every step runs and every listed output exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import run_cli

pytestmark = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                reason="needs Debian's dataset-fashion-mnist (scripts/system-packages.sh)")


@pytest.mark.slow  # the whole quick demo in a subprocess
def test_quick_demo_writes_every_listed_output(tmp_path, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "mikata", "demo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    try:
        listed = out.stdout.split("Outputs:")[1].strip().splitlines()
        assert len(listed) >= 6
        for line in listed:
            assert Path(line.split()[-1]).exists(), line
        assert "accuracy" in out.stdout and "suspected label errors" in out.stdout
        assert (tmp_path / "explain" / "chelsea_explain.png").is_file()
        assert (tmp_path / "visualize-classes" / "grid.png").is_file()
        card = json.loads((tmp_path / "run" / "evaluate" / "scorecard.json").read_text())
        assert set(card["passes"]) == {"gradcam", "saliency", "guided-backprop"}
        report = (tmp_path / "run" / "report.html").read_text()
        assert "scorecard" in report.lower()
        assert "Feature visualization" in report and (tmp_path / "run" / "featurevis" / "classes" / "grid.png").is_file()
        assert "Confusion matrix" in report and "http://" not in report and "https://" not in report
        assert 'id="units"' in report and (tmp_path / "run" / "units" / "units.png").is_file()
        assert 'id="concepts"' in report and (tmp_path / "run" / "concepts" / "atlas.json").is_file()
        assert "Why is a class recognised?" in out.stderr + out.stdout
        from PIL import Image
        import numpy as np

        cls_img = np.asarray(Image.open(tmp_path / "run" / "featurevis" / "classes" / "Sneaker.png").convert("RGB"))
        assert (cls_img.max(-1) == cls_img.min(-1)).all()  # the model saw gray images only: gray class images
        manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
        assert manifest["identity"]["layer"] == "blocks.4"  # 4x4 at the quick demo's 32 px, not the 1x1 head
        assert "mikata serve" in out.stderr + out.stdout
    except AssertionError as e:  # say what the demo printed: a rare failure here must be diagnosable from CI's log
        raise AssertionError(f"{e}\n--- demo stdout (tail) ---\n{out.stdout[-4000:]}\n"
                             f"--- demo stderr (tail) ---\n{out.stderr[-2000:]}") from e

    # The fine-tuned checkpoint works wherever a model spec is accepted: predict, explain, scan (above).
    # These commands run in this process (each has its own subprocess tests): the demo's files are what is checked.
    ckpt = str(tmp_path / "fashion-mnist-lite0.safetensors")
    image = str(next((tmp_path / "fashion-mnist" / "Sneaker").glob("*.png")))
    pred = run_cli(capsys, "predict", ckpt, image, "--top", "3")
    assert pred.returncode == 0 and pred.stdout.count("%") == 3
    expl = run_cli(capsys, "explain", ckpt, image, "--methods", "gradcam,saliency", "--out", str(tmp_path / "ckpt-explain"))
    assert expl.returncode == 0, expl.stderr[-2000:]
    assert list((tmp_path / "ckpt-explain").glob("*.png"))

    # the Python API on the demo's own run gives the numbers `mikata audit --json` prints
    import mikata

    audit = run_cli(capsys, "audit", str(tmp_path / "run"), "--json", "--issues", "100000")
    assert audit.returncode in (0, 1), audit.stderr[-2000:]
    a = json.loads(audit.stdout)
    run = mikata.open_run(tmp_path / "run")
    assert run.summary()["accuracy"] == pytest.approx(a["accuracy"])
    assert run.confusion(None).to_numpy().tolist() == a["confusion"]["counts"]
    assert run.label_issues()["path"].tolist() == [i["path"] for i in a["label_issues"]]
    assert len(run.to_pandas()) == a["images"]
