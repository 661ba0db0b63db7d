"""Documentation that is executed: the quickstart notebook in a real Jupyter kernel, the README's Python
blocks, and the API reference built with warnings as errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_runs_top_to_bottom_in_a_kernel(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    from nbclient import NotebookClient

    nb = jupytext.read(ROOT / "examples" / "quickstart.py")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") for outs in outputs.values() for o in outs if o.get("output_type") == "stream")
    assert "scanned 30 images, skipped 0" in text
    found = re.search(r"planted label errors found: (\[.*?\]) of (\[.*?\])", text)
    assert found and eval(found.group(1)) == eval(found.group(2))  # both planted errors are found
    shown = [o for outs in outputs.values() for o in outs if o.get("output_type") in ("execute_result", "display_data")]
    assert any("image/png" in o["data"] for o in shown)  # the explanation figure and the overlay
    assert any("text/html" in o["data"] and "mikata run" in o["data"]["text/html"] for o in shown)


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_python_block_in_the_readme_runs(tmp_path, lite0, photos):
    """The blocks run in order in one folder that holds ``runs/a``: real photos scanned with the built-in model."""
    from PIL import Image

    import mikata

    for name, cls in (("chelsea", "tiger cat"), ("coffee", "espresso"), ("flower", "daisy"), ("china", "palace")):
        img = Image.open(photos[name])
        for i, box in enumerate([(0, 0, 0.9, 0.9), (0.1, 0.1, 1, 1), (0.05, 0, 0.95, 0.9)]):
            w, h = img.size
            (tmp_path / "photos" / cls).mkdir(parents=True, exist_ok=True)
            img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))).save(
                tmp_path / "photos" / cls / f"{name}_{i}.png")
    mikata.scan(lite0, tmp_path / "photos", tmp_path / "runs" / "a", workers=0, progress=False)
    blocks = _readme_python_blocks()
    assert len(blocks) >= 2, "the README has Python examples"
    for i, code in enumerate(blocks):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])})
        assert out.returncode == 0, f"README Python block {i + 1} failed:\n{code}\n{out.stderr[-3000:]}"


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    page = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    import mikata

    for name in mikata.__all__:
        if name != "__version__":
            assert f"mikata.{name}" in page, f"mikata.{name} missing from the API reference"
