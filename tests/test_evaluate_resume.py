"""`mikata evaluate` survives interruption: each (method, check) part is saved as it completes,
the same command reuses finished parts without recomputing them (and says so), changed options
recompute what they affect, and a process killed with SIGKILL leaves its finished parts usable.
Runs on the real MNIST CNN and real digits (28 px: the whole evaluate takes seconds)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mikata.cli import main

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
SMALL = ["--methods", "gradcam,saliency", "--steps", "4", "--stages", "2", "--samples", "2", "--seed", "1"]
MODEL = "test_scan_support:mnist_handle"


@pytest.fixture()
def digits(tmp_path) -> list[str]:
    from test_scan_support import digit_images

    images, _ = digit_images(3)
    paths = []
    for i, im in enumerate(images):
        p = tmp_path / f"d{i}.png"
        im.save(p)
        paths.append(str(p))
    return paths


class Calls:
    """Counts calls of a patched function and optionally raises on call number ``fail_at``."""

    def __init__(self, fn, fail_at: int | None = None, error: type[BaseException] = KeyboardInterrupt):
        self.fn, self.fail_at, self.error, self.n = fn, fail_at, error, 0

    def __call__(self, *a, **k):
        self.n += 1
        if self.fail_at is not None and self.n >= self.fail_at:
            raise self.error("stopped by the test")
        return self.fn(*a, **k)


def _patch(monkeypatch, module: str, name: str, **kw) -> Calls:
    import importlib

    mod = importlib.import_module(module)
    calls = Calls(getattr(mod, name), **kw)
    monkeypatch.setattr(mod, name, calls)
    return calls


def test_interrupted_evaluate_resumes_without_recomputing_finished_parts(digits, tmp_path, monkeypatch, capsys,
                                                                          caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "ev"
    args = ["evaluate", MODEL, *digits, *SMALL, "--out", str(out), "--json"]
    # a reference run into another folder, never interrupted
    assert main(["-q", "evaluate", MODEL, *digits, *SMALL, "--out", str(tmp_path / "ref"), "--json"]) == 0
    reference = json.loads(capsys.readouterr().out)

    # Ctrl-C while the second method's cascade runs: maps, all faithfulness parts and one cascade are done
    cascade = _patch(monkeypatch, "mikata.evaluation.randomization", "cascade", fail_at=2)
    assert main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert "interrupted: every finished part is saved in" in caplog.text
    caplog.clear()
    saved = sorted(p.name.split(".")[0] + "." + p.name.split(".")[1] for p in (out / "parts").glob("*.pt"))
    assert saved == ["faithfulness.gradcam", "faithfulness.random", "faithfulness.saliency", "maps.gradcam",
                     "maps.saliency", "randomization.gradcam"]
    assert not list((out / "parts").glob("*.tmp")) and not (out / "scorecard.json").exists()
    monkeypatch.setattr("mikata.evaluation.randomization.cascade", cascade.fn)

    # the same command again: only the unfinished parts run
    curves = _patch(monkeypatch, "mikata.evaluation.faithfulness", "perturbation_curves")
    explain = _patch(monkeypatch, "mikata.attribution.engine", "explain")
    cascade = _patch(monkeypatch, "mikata.evaluation.randomization", "cascade")
    assert main(args) == 0
    captured = capsys.readouterr()
    card = json.loads(captured.out)
    assert curves.n == 0 and cascade.n == 1  # no curve recomputed; only saliency's cascade
    # explain: saliency's 2 cascade stages + 2 random-logit + 2x2 noisy copies; never the original maps
    assert explain.n == 2 + 2 + 4
    assert "6 of 11 parts already done" in caplog.text and "gradcam faithfulness" in caplog.text
    assert card["parts"] == {"total": 11, "reused": 6}
    assert card["table"] == reference["table"] and card["passes"] == reference["passes"]
    assert json.loads((out / "scorecard.json").read_text())["table"] == reference["table"]


def test_changed_options_do_not_reuse_stale_parts(digits, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev"
    base = ["-q", "evaluate", MODEL, *digits, "--out", str(out), "--json", "--methods", "gradcam",
            "--stages", "2", "--samples", "1", "--seed", "1"]
    assert main([*base, "--steps", "4"]) == 0
    first = json.loads(capsys.readouterr().out)
    curves = _patch(monkeypatch, "mikata.evaluation.faithfulness", "perturbation_curves")
    cascade = _patch(monkeypatch, "mikata.evaluation.randomization", "cascade")
    assert main([*base, "--steps", "6"]) == 0  # faithfulness changes; maps, cascade, stability stay
    second = json.loads(capsys.readouterr().out)
    assert curves.n == 2 and cascade.n == 0  # gradcam's and the random order's curves, again
    assert second["parts"] == {"total": 6, "reused": 4}
    assert second["settings"]["steps"] == 6 and second["table"] != first["table"]
    assert main([*base, "--steps", "6", "--restart"]) == 0  # --restart recomputes everything
    assert json.loads(capsys.readouterr().out)["parts"]["reused"] == 0
    # other images: nothing reused (the key hashes the images as the model sees them)
    assert main([*base[:3], *digits[:2], *base[3 + len(digits):], "--steps", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["parts"]["reused"] == 0


KILLER = """
import os, signal, sys
sys.path[:0] = [{src!r}, {tests!r}]
import mikata.evaluation.randomization as R
real = R.cascade
def cascade(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)   # killed hard while the first cascade starts
R.cascade = cascade
from mikata.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_process_leaves_its_parts_and_the_rerun_prints_plain_lines(digits, tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(src=str(SRC), tests=str(TESTS)))
    out = tmp_path / "ev"
    args = ["evaluate", MODEL, *digits, *SMALL, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    env.pop("MIKATA_PROGRESS", None)
    killed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert killed.returncode == -9
    assert len(list((out / "parts").glob("*.pt"))) == 5  # 2 maps + 3 faithfulness curves
    done = subprocess.run([sys.executable, "-m", "mikata", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    # stderr is a pipe here, as in a log file: plain lines, no carriage returns or escape codes
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert "5 of 11 parts already done" in done.stderr
    assert "evaluate: 3 images x 2 methods x 4 checks (6 parts to compute, 5 reused); about" in done.stderr
    assert "evaluate: done, 11/11 part in" in done.stderr
    assert json.loads((out / "scorecard.json").read_text())["parts"] == {"total": 11, "reused": 5}
