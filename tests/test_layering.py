"""The layering of docs/layering.md, checked on the source with ``ast``: each module imports only
from its own layer or the layers below, and no two modules import each other in a circle.

Every ``import`` counts, at module level or inside a function (a lazy import still ties the
modules together); ``if TYPE_CHECKING:`` imports are for annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mikata"

# layer of each top-level module or package of mikata; higher numbers sit above lower ones
LAYERS: dict[str, int] = {
    # 4 — thin outer layers: parse -> call one library function -> write / render
    "cli": 4, "server": 4, "report": 4, "demo": 4, "__main__": 4,
    # 3 — dataset-level work: scanning a dataset into a run, analyses of a run, training, evaluation, concepts
    "scanning": 3, "analysis": 3, "training": 3, "evaluation": 3, "concepts": 3,
    # 2 — the run format (files, store, lock, versions, merge) and the pieces the report and the app share
    "runs": 2, "presentation": 2,
    # 1 — per-image / per-unit algorithms
    "attribution": 1, "featurevis": 1, "inspect": 1, "prediction": 1,
    # 0 — models, data, hooks, display (images, overlays, grids, colormaps), errors
    # (the root package holds __version__ and a table of lazy names as strings: it imports only mikata.lazy)
    "models": 0, "data": 0, "hooks": 0, "display": 0, "errors": 0, "devices": 0, "progress": 0, "formatting": 0, "registry": 0,
    "__init__": 0, "notebook": 0, "lazy": 0,
}
# import edges that close a circle on purpose, each with why; keep this list short
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {
}
LAYER_NAMES = {4: "cli/server/report/demo", 3: "scanning/analysis/training/evaluation/concepts",
               2: "runs/presentation", 1: "attribution/featurevis/inspect", 0: "models/data/hooks/display"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The mikata modules ``path`` imports (the most specific existing module of each import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("mikata") and t != name:
                out.add(t)
                break
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods)) for name, path in mods.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top not in LAYERS:
        pytest.fail(f"{module}: its top-level package {top!r} has no layer in LAYERS; add it (and to docs/layering.md)")
    return LAYERS[top]


def test_every_module_imports_only_from_its_layer_or_below():
    graph = _graph()
    assert len(graph) > 100  # the walk found the package
    upward = sorted(f"{a} ({LAYER_NAMES[_layer(a)]}) imports {b} ({LAYER_NAMES[_layer(b)]})"
                    for a, deps in graph.items() for b in deps if _layer(b) > _layer(a))
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_there_are_no_import_cycles_between_modules():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is how packages work, not a circle
    edges = {a: {b for b in deps if not (b.startswith(a + ".") and (PACKAGE.parent / a.replace(".", "/")).is_dir())
                 and (a, b) not in ALLOWED_CYCLE_EDGES}
             for a, deps in graph.items()}
    assert all(b in graph.get(a, ()) for a, b in ALLOWED_CYCLE_EDGES), "an allowed edge is gone: drop it from the list"
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_imports_and_ignores_type_checking_ones(tmp_path):
    src = tmp_path / "mikata" / "models"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "thing.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from mikata.scanning.scan import scan\n"
                                  "def f():\n    from mikata.report import write_report\n"
                                  "    from . import other\n")
    known = {"mikata.models", "mikata.models.thing", "mikata.models.other", "mikata.report", "mikata.scanning.scan"}
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        got = _imports(src / "thing.py", "mikata.models.thing", known)
    finally:
        SRC = saved
    assert got == {"mikata.report", "mikata.models.other"}
    assert _layer("mikata.report") > _layer("mikata.models.thing")
