"""The API reference runs: every public name of ``mikata`` and every member of ``Run`` has an example,
and every example is executed here, exactly as the rendered API page shows it (no ``+SKIP``).

The examples run in one folder made by ``docs_support.make_docs_folder`` (``chelsea.png``,
``coffee.png``, ``photos/``, ``photos.csv``, ``runs/a``) with ``mikata`` imported and ``handle`` the
built-in model (``mikata.load_model("efficientnet-lite0")``), as ``docs/api.rst`` says. The folder is this
module's copy of the session's template (``conftest.docs_folder_template``, shared with ``test_docs``).
"""

from __future__ import annotations

import doctest
import inspect
import os
import shutil

import pytest

import mikata

PUBLIC = [n for n in mikata.__all__ if n != "__version__"]
RUN_MEMBERS = [n for n in vars(mikata.Run) if not n.startswith("_")]
# module docstrings and returned types whose examples the rendered pages show as well
MODULES = ["mikata.hooks", "mikata.attribution.explanation", "mikata.attribution.result:Attribution"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture(scope="module")
def folder(tmp_path_factory, docs_folder_template):
    copy = tmp_path_factory.mktemp("reference") / "docs"
    shutil.copytree(docs_folder_template, copy)
    return copy


def _doc(kind: str, name: str) -> tuple[str, str]:
    """(qualified name, docstring) of a public name, a ``Run`` member or a module."""
    if kind == "public":
        return f"mikata.{name}", inspect.getdoc(getattr(mikata, name)) or ""
    if kind == "run":
        member = vars(mikata.Run)[name]
        target = getattr(member, "fget", None) or getattr(member, "func", None) or member
        return f"mikata.Run.{name}", inspect.getdoc(target) or ""
    import importlib

    module, _, attr = name.partition(":")
    obj = importlib.import_module(module)
    return name, inspect.getdoc(getattr(obj, attr) if attr else obj) or ""


CASES = [("public", n) for n in PUBLIC] + [("run", n) for n in RUN_MEMBERS] + [("module", m) for m in MODULES]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_every_example_of_the_reference_runs_as_shown(folder, lite0, kind, name, monkeypatch):
    qualname, doc = _doc(kind, name)
    assert ">>>" in doc, f"{qualname} has no example in its docstring"
    assert "+SKIP" not in doc, f"{qualname}'s example is skipped; make it run in the docs folder"
    test = doctest.DocTestParser().get_doctest(doc, {"mikata": mikata, "handle": lite0}, qualname, None, 0)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    try:
        runner.run(test, out=out.append)
    finally:
        lite0.model.zero_grad(set_to_none=True)  # the hooks examples call backward() as a user would
    assert runner.failures == 0, "".join(out)


def test_the_examples_folder_is_what_api_rst_says(folder):
    text = (os.path.join(os.path.dirname(__file__), "..", "docs", "api.rst"))
    with open(text, encoding="utf-8") as f:
        page = f.read()
    for name in ("chelsea.png", "coffee.png", "photos/", "photos.csv", "runs/a"):
        assert name in page
        assert (folder / name.rstrip("/")).exists()
