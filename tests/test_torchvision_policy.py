"""One torchvision policy (``mikata.models.torchvision_ops``): the command line loads ``timm:`` and
``torchvision:`` specs on this CPU-only torch build, the predictions equal an in-process load, and no
other module imports torchvision its own way."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "mikata"


def _mikata(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mikata", *args], capture_output=True, text=True, timeout=600, env=env)


def test_explain_a_timm_spec_from_the_command_line_predicts_as_in_process(photos, tmp_path):
    from mikata.data import load_image
    from mikata.models import load_model

    image = str(photos["chelsea"])
    r = _mikata("explain", "timm:resnet18?weights=random", image, "--methods", "gradcam", "--device", "cpu",
                "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    top = json.loads((tmp_path / "summary.json").read_text())[0]["top"]
    h = load_model("timm:resnet18?weights=random")  # seeded random weights: the same network in both processes
    with torch.inference_mode():
        p = torch.softmax(h.model(h.preprocess([load_image(image)])), 1)[0]
    want = p.topk(len(top))
    assert [t["id"] for t in top] == want.indices.tolist()
    assert [t["probability"] for t in top] == pytest.approx(want.values.tolist(), rel=1e-4)
    assert (tmp_path / "chelsea_explain.png").is_file()


def test_layers_of_a_torchvision_spec_from_the_command_line():
    r = _mikata("layers", "torchvision:resnet18?weights=random")
    assert r.returncode == 0, r.stderr
    assert "layer4" in r.stdout and "operator torchvision::nms" not in r.stderr


def test_a_declared_operator_fails_loudly_when_called():
    from mikata.models.torchvision_ops import import_torchvision

    import_torchvision()
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    try:
        keep = torch.ops.torchvision.nms(boxes, torch.tensor([1.0]), 0.5)
    except (NotImplementedError, RuntimeError) as e:  # a schema without a kernel (this CPU build)
        assert "torchvision::nms" in str(e) or "nms" in str(e)
    else:  # a torchvision whose operators load (a matching build): the real kernel answers
        assert keep.tolist() == [0]


def test_no_other_module_imports_torchvision_its_own_way():
    owners = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torchvision" or n.startswith("torchvision.") for n in names):
                owners.add(path.relative_to(SRC).as_posix())
    assert owners == {"models/torchvision_ops.py"}
