"""`mikata layers` and `mikata predict` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cli_support import run_cli


def run(*args):
    # one torch thread, as the suite's workers use: a second one only spins on a shared 2-core machine
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mikata", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_predict_puts_a_cat_first_and_reports_bad_files(photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = run("predict", "efficientnet-lite0", str(photos["chelsea"]), str(bad), str(photos["coffee"]), "--top", "5", "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data[0]["top"][0]["class"] in {"tiger cat", "Egyptian cat", "tabby"}
    assert data[2]["top"][0]["class"] == "espresso"
    assert "error" in data[1] and str(bad) in out.stderr and out.stderr.count("\n") == 1


def test_layers_table_and_json(capsys):
    table = run("layers", "efficientnet-lite0", "--depth", "0")  # the command as a user runs it
    assert table.returncode == 0 and "<- default target layer" in table.stdout and "1280x7x7" in table.stdout
    data = json.loads(run_cli(capsys, "layers", "efficientnet-lite0", "--json").stdout)  # the same command's JSON
    assert data["default_layer"] == "head" and any(l["name"] == "blocks.15" for l in data["layers"])


def test_unknown_model_is_one_line_and_nonzero(capsys):
    # in this process: the real process's exit code and one-line stderr are checked above with a bad file
    out = run_cli(capsys, "predict", "no-such-model", "x.png")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "efficientnet-lite0" in out.stderr
