"""Documentation that is executed: the quickstart notebook in a real Jupyter kernel, the README's Python
blocks, and the API reference built with warnings as errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import child_env

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_runs_top_to_bottom_in_a_kernel(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    from nbclient import NotebookClient

    nb = jupytext.read(ROOT / "examples" / "quickstart.py")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=child_env())
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


GUIDES = ROOT / "docs" / "guides"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _documents() -> list[Path]:
    """The README and every guide: the pages whose Python blocks the tests run."""
    return [ROOT / "README.md"] + sorted(GUIDES.glob("*.md"))


# Runs the blocks sent on stdin (JSON: [folder, name, code], ...) in order, each from its page's folder and in a
# namespace of its own, as ``python -c CODE`` runs it: a block that leans on a name an earlier block defined
# fails. It prints "block: NAME" before each one and stops at the first that raises.
RUN_BLOCKS = """
import json, os, sys, traceback
for folder, name, code in json.load(sys.stdin):
    os.chdir(folder)
    print("block:", name, flush=True)
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
"""


def test_every_python_block_of_the_readme_and_the_guides_runs(tmp_path, docs_folder_template):
    """Each page's blocks run in order, each in a namespace of its own, in the examples folder of
    ``docs_support`` (``photos/``, ``runs/a``, ...), one copy of it per page (the session's template,
    built once for this test and ``test_reference``). One fresh interpreter runs them all, one block after the
    other (``RUN_BLOCKS``): what a block needs it imports and defines itself."""
    import json
    import shutil

    base = docs_folder_template
    assert len(_python_blocks(ROOT / "README.md")) >= 2, "the README has Python examples"
    env = {**child_env(), "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    jobs, codes = [], {}
    for page in _documents():
        blocks = _python_blocks(page)
        if not blocks:
            continue
        folder = tmp_path / page.stem
        shutil.copytree(base, folder)
        for i, code in enumerate(blocks):
            name = f"{page.name}: Python block {i + 1}"
            jobs.append([str(folder), name, code])
            codes[name] = code
    out = subprocess.run([sys.executable, "-c", RUN_BLOCKS], input=json.dumps(jobs), capture_output=True, text=True,
                         timeout=600, env=env)
    ran = [line.split("block: ", 1)[1] for line in out.stdout.splitlines() if line.startswith("block: ")]
    last = ran[-1] if ran else "the interpreter"
    assert out.returncode == 0, f"{last} failed:\n{codes.get(last, '')}\n{out.stderr[-3000:]}"
    assert ran == list(codes), ran  # every block ran, in order


def test_the_readme_keeps_the_two_set_up_commands_ci_runs():
    """The README's set-up is exactly two commands, and CI (``.ci/run``) runs the second one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
                for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["bash scripts/test.sh"]


def test_every_guide_is_linked_from_the_readme_and_in_the_docs_toctree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    guides = sorted(GUIDES.glob("*.md"))
    assert len(guides) >= 8
    for guide in guides:
        assert f"docs/guides/{guide.name}" in readme, f"README does not link {guide.name}"
        assert f"guides/{guide.stem}" in index, f"docs/index.rst does not list {guide.name}"


def test_api_reference_builds_without_warnings(tmp_path):
    """``sphinx-build -n -W``: every reference resolves; every public name, every type a public function or a
    ``Run`` method returns, and every command of the parser has its entry."""
    pytest.importorskip("sphinx")
    out = subprocess.run([sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-q", "-b", "html",
                          str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    page = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    import mikata

    for name in mikata.__all__:
        if name != "__version__":
            assert f"mikata.{name}" in page, f"mikata.{name} missing from the API reference"
    assert page.count('class="doctest highlight-default') >= len(mikata.__all__) - 1  # the examples are shown
    types = (tmp_path / "html" / "types.html").read_text(encoding="utf-8")
    for cls in returned_types():
        anchors = {f'id="{cls.__module__}.{cls.__qualname__}"', f'id="mikata.{cls.__qualname__}"'}  # public: mikata.X
        assert any(a in types + page for a in anchors), f"{cls.__qualname__} has no page"
    cli = (tmp_path / "html" / "cli.html").read_text(encoding="utf-8")
    from mikata.cli import COMMANDS

    for command in COMMANDS:
        assert f"mikata {command}</h2>" in cli or f"mikata {command}<a" in cli, f"mikata {command} missing from cli.html"
    assert "--shard" in cli and "counted from 0" in cli


def returned_types() -> set[type]:
    """The mikata classes the public functions and the ``Run`` members are annotated to return."""
    import inspect
    import typing

    import mikata

    found: set[type] = set()
    objects = [getattr(mikata, n) for n in mikata.__all__ if n != "__version__"]
    objects += [vars(mikata.Run)[n] for n in vars(mikata.Run) if not n.startswith("_")]
    for obj in objects:
        fn = getattr(obj, "fget", None) or getattr(obj, "func", None) or obj
        if inspect.isclass(fn) or not callable(fn):
            continue
        ret = getattr(fn, "__annotations__", {}).get("return")
        namespace = _ModuleNames(inspect.getmodule(fn), {**vars(inspect.getmodule(fn)), **_checking_names()})
        while isinstance(ret, str):  # a quoted annotation under ``from __future__ import annotations``
            ret = eval(ret, {}, namespace)  # noqa: S307 - mikata's own annotations
        stack = [ret]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and t.__module__.startswith("mikata."):
                found.add(t)
            stack.extend(typing.get_args(t))
    return found


class _ModuleNames(dict):
    """A module's names, and those its ``__getattr__`` resolves on first use (``mikata.models``' lazy names)."""

    def __init__(self, module, names: dict):
        super().__init__(names)
        self.module = module

    def __missing__(self, name: str):
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise KeyError(name) from None


def _checking_names() -> dict:
    """Names that modules import only for type checking, so their annotations can be evaluated here."""
    import pandas as pd
    from PIL import Image

    from mikata.analysis.binary import Curves
    from mikata.analysis.issues import DatasetIssues
    from mikata.analysis.gallery import Gallery
    from mikata.presentation.maps import MapService
    from mikata.notebook import ImageList

    return {"pd": pd, "Image": Image, "Curves": Curves, "DatasetIssues": DatasetIssues, "MapService": MapService,
            "Gallery": Gallery, "ImageList": ImageList}
