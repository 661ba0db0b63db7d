"""Shared fixtures: the built-in model, real photos that installed packages ship, torchvision models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from torchvision_compat import import_torchvision_declaring_ops  # noqa: E402

# Torch's threads share the cores with pytest-xdist's other workers: one worker uses up to 2 threads, and
# N workers split the cores between them (a worker's threads beyond its share only contend).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
torch.set_num_threads(_THREADS)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # The processes a test starts (mikata commands, Jupyter kernels, Ray workers) take the same share: with torch's
    # default of one thread per core, a child next to the other worker oversubscribes the cores (its threads spin).
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)


def pytest_collection_modifyitems(session, config, items):
    """Under pytest-xdist, hand out the files holding ``slow`` tests first, then the others by test count.

    Workers take whole files (``--dist loadfile``) in collection order; a long file handed out last
    leaves the other worker idle while it runs. The order is the same on every worker (xdist checks
    that they collected the same list). A plain run keeps pytest's own order.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    slow = {f for f, its in files.items() if any(it.get_closest_marker("slow") for it in its)}
    order = sorted(files, key=lambda f: (f not in slow, -len(files[f]), f))
    items[:] = [it for f in order for it in files[f]]


def _photo_arrays() -> dict:
    """Real photos from installed packages: scikit-image, scikit-learn and matplotlib."""
    import numpy as np
    from PIL import Image
    from skimage import data
    import matplotlib
    import sklearn.datasets

    sk = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return {
        "chelsea": Image.fromarray(data.chelsea()),
        "coffee": Image.fromarray(data.coffee()),
        "astronaut": Image.fromarray(data.astronaut()),
        "rocket": Image.fromarray(data.rocket()),
        "china": Image.open(sk / "china.jpg").convert("RGB"),
        "flower": Image.open(sk / "flower.jpg").convert("RGB"),
        "grace_hopper": Image.open(mpl / "grace_hopper.jpg").convert("RGB"),
    }


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """name -> PNG path of each real photo."""
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name, img in _photo_arrays().items():
        out[name] = folder / f"{name}.png"
        img.save(out[name])
    return out


@pytest.fixture(scope="session")
def lite0():
    from mikata.models import load_model

    return load_model("efficientnet-lite0")


@pytest.fixture(autouse=True)
def _shared_state_left_as_found(request):
    """A test leaves the process as the next test (in any order, on any xdist worker) expects it: the shared
    ``lite0`` without parameter gradients, and the CLI's global ``--quiet`` off. A test that leaves either is
    named in a warning and the state is put back, so the next test's premise holds."""
    import warnings

    from mikata import progress

    yield
    if progress._quiet:
        warnings.warn(f"{request.node.nodeid} left mikata's --quiet switch on; switched off")
        progress.set_quiet(False)
    if "lite0" in request.fixturenames:
        net = request.getfixturevalue("lite0").model
        if any(p.grad is not None for p in net.parameters()):
            warnings.warn(f"{request.node.nodeid} left gradients on the shared lite0; cleared")
            net.zero_grad(set_to_none=True)


@pytest.fixture(scope="session")
def torchvision():
    return import_torchvision_declaring_ops()


@pytest.fixture()
def resnet18(torchvision):
    """torchvision resnet18 with random (seeded) weights: nothing is downloaded."""
    from mikata.models import load_model

    torch.manual_seed(0)
    return load_model("torchvision:resnet18", pretrained=False)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, through Playwright (see browser_support.py)."""
    from playwright.sync_api import sync_playwright

    from browser_support import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def _utf8(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a file name's undecodable bytes) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


if os.environ.get("PYTEST_XDIST_WORKER"):
    # A worker sends warnings and reports to the controller as UTF-8: a warning or a captured log that quotes
    # an undecodable file name (the hostile-name tests make such files) would stop the worker. Escape it.
    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(warning_message, when, nodeid, location):
        message = warning_message.message
        text = str(message)
        if _utf8(text) != text:
            try:
                warning_message.message = type(message)(_utf8(text)) if isinstance(message, Warning) else _utf8(text)
            except TypeError:  # a warning class whose constructor takes other arguments
                warning_message.message = UserWarning(_utf8(text))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        report = (yield).get_result()
        report.sections = [(title, _utf8(content)) for title, content in report.sections]
        if report.longrepr is not None and _utf8(str(report.longrepr)) != str(report.longrepr):
            report.longrepr = _utf8(str(report.longrepr))


# ---------------------------------------------------------------- ci32b: inputs built once per session
def _built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` once per test session, also across pytest-xdist workers (the workers' temp folders
    share a parent; a file lock makes the first worker build and the others wait for it). Tests only read
    the folder: each copies what it writes into (``shutil.copytree``)."""
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if folder.exists():  # a build that failed part-way
                shutil.rmtree(folder)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def docs_folder_template(tmp_path_factory, lite0, photos) -> Path:
    """The documentation's examples folder (``docs_support.make_docs_folder``: photos, a manifest, runs made with
    the built-in model), built once per session; ``test_reference`` and ``test_docs`` each work on a copy."""
    from docs_support import make_docs_folder

    return _built_once(tmp_path_factory, "docs-template", lambda folder: make_docs_folder(folder, lite0, photos))


@pytest.fixture(scope="session")
def concept_run_template(tmp_path_factory) -> dict:
    """``concepts_ui_support.concept_run`` (a scanned digit run with its concept atlas), built once per session:
    ``{"run", "handle", "atlas"}``; the report and app tests each work on a copy (``copy_concept_run``)."""
    from concepts_ui_support import concept_run
    from test_scan_support import mnist_handle

    from mikata.concepts.atlas import load_atlas

    base = _built_once(tmp_path_factory, "concept-run-template", concept_run)
    atlas = load_atlas(base / "run")
    assert atlas is not None, f"{base / 'run'} has no current concept atlas"
    return {"run": base / "run", "handle": mnist_handle(), "atlas": atlas}


@pytest.fixture(scope="session")
def digits_trained_2_epochs(tmp_path_factory, lite0) -> dict[str, Path]:
    """``test_train.write_digits``'s folder (4 digits x 40) and an uninterrupted 2-epoch fine-tune of lite0 on it
    (``test_train.TWO_EPOCHS``, as ``mikata train`` with those options gives), built once per session: the baseline
    that interrupted-then-resumed runs must end at (``test_train``, ``test_hostile_signals``). Read-only."""
    from test_train import TWO_EPOCHS, write_digits

    from mikata.training import train

    def build(folder: Path) -> None:
        write_digits(folder / "digits")
        train(folder / "digits", lite0, folder / "full.safetensors", progress=False, **TWO_EPOCHS)

    base = _built_once(tmp_path_factory, "digits-trained-2-epochs", build)
    return {"digits": base / "digits", "full": base / "full.safetensors"}

