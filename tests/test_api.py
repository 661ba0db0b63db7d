"""The top-level API: every public name is what its docstring says, whatever was imported first."""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mikata

SRC = Path(mikata.__file__).parent
# what each public name must be: a function/class with this name and home
EXPECTED = {name: spec for name, spec in mikata._API.items()}


def test_no_public_name_is_also_a_submodule():
    submodules = {m.name for m in pkgutil.iter_modules([str(SRC)])}
    clash = sorted(set(mikata.__all__) & submodules)
    assert not clash, f"public names that a submodule import would replace: {clash}"


def _submodules() -> list[str]:
    out = []
    for m in pkgutil.walk_packages([str(SRC)], prefix="mikata."):
        if ".server" in m.name or m.name.endswith("__main__"):
            continue
        out.append(m.name)
    return out


CHECK = """
import importlib, json, sys
order = json.loads(sys.argv[1])
for name in order:
    importlib.import_module(name)
import mikata
bad = {}
for name, (module, attr) in mikata._API.items():
    obj = getattr(mikata, name)
    if getattr(obj, "__name__", None) != attr or getattr(obj, "__module__", None) != module:
        bad[name] = repr(obj)[:80]
print(json.dumps(bad))
"""


@functools.lru_cache(maxsize=None)
def _check_order(order: tuple[str, ...]) -> subprocess.CompletedProcess:
    """CHECK in a fresh process after importing ``order``; an order both seeds share runs once."""
    return subprocess.run([sys.executable, "-c", CHECK, json.dumps(list(order))], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_public_name_survives_any_import_order(seed):
    import random

    mods = _submodules()
    random.Random(seed).shuffle(mods)
    for order in (mods, ["mikata.prediction", "mikata.training", "mikata.evaluation", "mikata.cli"]):
        out = _check_order(tuple(order))
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_every_public_function_has_a_docstring_with_an_example():
    for name in mikata.__all__:
        if name == "__version__":
            continue
        doc = getattr(mikata, name).__doc__ or ""
        assert doc.strip(), f"mikata.{name} has no docstring"
    for name in ("explain", "visualize", "open_run", "predict", "scan", "train", "evaluate", "load_model"):
        module = importlib.import_module(mikata._API[name][0])
        text = (getattr(mikata, name).__doc__ or "") + (module.__doc__ or "")
        assert ">>>" in text, f"mikata.{name}: no runnable example in its docstring or its module's"


def test_the_readme_predict_example_runs(lite0, photos):
    preds = mikata.predict(lite0, [photos["chelsea"]], top=3)
    assert preds[0].error is None and len(preds[0].top) == 3
    assert preds[0].top[0][0] in ("tiger cat", "tabby", "Egyptian cat")


def test_explain_returns_an_explanation_that_draws_itself(lite0, photos):
    from PIL import Image

    ex = mikata.explain(lite0, [photos["chelsea"], Image.open(photos["coffee"])], ["gradcam", "saliency"],
                        targets="top2")
    assert isinstance(ex, mikata.Explanation) and isinstance(ex, list)
    assert [(a.method, a.target_spec) for a in ex] == [("gradcam", "top1"), ("gradcam", "top2"),
                                                        ("saliency", "top1"), ("saliency", "top2")]
    assert ex[0].maps.shape == (2, *lite0.input_size)
    png = ex._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the same maps as the tensor-level engine on the same batch
    from mikata.attribution import explain

    ref = explain(lite0, ex.x, ["gradcam"], targets="top1")[0]
    assert (ref.maps == ex[0].maps).all()


def test_visualize_and_inspect_results_show_themselves(lite0, photos):
    r = mikata.visualize(lite0, classes=["zebra"], options=mikata.RenderOptions(size=48, steps=3))
    assert r.labels == ["zebra"] and r._repr_png_()[:4] == b"\x89PNG"
    assert "Rendering(1 image(s)" in repr(r) and "tensor" not in repr(r)
    assert mikata.activations(lite0, photos["chelsea"], "blocks.3", top=4)._repr_png_()[:4] == b"\x89PNG"
    assert mikata.filters(lite0)._repr_png_()[:4] == b"\x89PNG"
    with pytest.raises(mikata.errors.MikataError, match="exactly one"):
        mikata.visualize(lite0, classes=["zebra"], channels=[0], layer="blocks.3")
