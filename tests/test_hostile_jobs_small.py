"""Issue 34 (jobs, the smaller list): checkpoints with non-float or non-finite weights, export column clashes and
non-UTF-8 names, terminal escape sequences in file names, `serve --split`, `--thresholds` NaN, reviews on a
read-only mount; `evaluate` and `train` with one undecodable image."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_support import run_cli
from hostile_support import cli_env, mikata_cmd, tiny_cnn
from mikata.cli import main
from mikata.errors import ModelLoadError

ESC = "\x1b"
EVIL = f"evil{ESC}[2J{ESC}]0;owned{ESC}\\.png"  # clear screen + set the window title


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------- checkpoint weights
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from mikata.models.loading import save_checkpoint

    return save_checkpoint(tiny_cnn(), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _rewrite(src: Path, dst: Path, change) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(src))
    change(state)
    save_file(state, str(dst), metadata=meta)
    return dst


HEAD = "6.weight"  # the classifier's weight in tiny_cnn (nn.Sequential index 6)
WEIGHTS = {
    "bool": (lambda s: s.update({HEAD: s[HEAD] > 0}), "tensor '6.weight' is stored as bool"),
    "int8": (lambda s: s.update({HEAD: (s[HEAD] * 100).to(torch.int8)}), "tensor '6.weight' is stored as int8"),
    "uint8": (lambda s: s.update({HEAD: s[HEAD].abs().mul(100).to(torch.uint8)}), "is stored as uint8"),
    "int64": (lambda s: s.update({HEAD: s[HEAD].mul(100).to(torch.int64)}), "is stored as int64"),
    "int32 conv": (lambda s: s.update({"0.weight": s["0.weight"].to(torch.int32)}),
                   "tensor '0.weight' is stored as int32"),
    "all NaN": (lambda s: s.update({HEAD: torch.full_like(s[HEAD], float("nan"))}),
                "tensor '6.weight' holds 80 NaN/inf value(s) of 80"),
    "all inf": (lambda s: s.update({HEAD: torch.full_like(s[HEAD], float("inf"))}), "holds 80 NaN/inf value(s)"),
    "one -inf bias": (lambda s: s["6.bias"].__setitem__(3, float("-inf")), "tensor '6.bias' holds 1 NaN/inf"),
    "NaN in a conv": (lambda s: s["2.weight"].view(-1).__setitem__(0, float("nan")), "tensor '2.weight' holds 1"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_non_float_or_non_finite_weights_are_refused(checkpoint, tmp_path, case):
    from mikata.models import load_model

    change, said = WEIGHTS[case]
    bad = _rewrite(checkpoint, tmp_path / "bad.safetensors", change)
    with pytest.raises(ModelLoadError, match="") as e:
        load_model(str(bad), architecture="hostile_support:tiny_cnn")
    assert said in str(e.value) and str(bad) in str(e.value)


def test_refused_weights_are_one_line_from_predict(checkpoint, tmp_path):
    from hostile_support import digit_png

    bad = _rewrite(checkpoint, tmp_path / "bad.safetensors", WEIGHTS["int8"][0])
    r = subprocess.run(mikata_cmd("predict", str(bad), str(digit_png(tmp_path / "d.png")), "--arch",
                                  "hostile_support:tiny_cnn"), env=cli_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"mikata predict: error: {bad}: tensor '6.weight' is stored as int8, but the model's weights are floating "
        "point; this is not a trained checkpoint: save the model again with mikata (or safetensors from float "
        "weights)"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_weights_of_any_precision_still_load_and_predict_the_same(checkpoint, tmp_path, dtype):
    from mikata.models import load_model

    ok = _rewrite(checkpoint, tmp_path / "ok.safetensors", lambda s: s.update({k: v.to(dtype) for k, v in s.items()}))
    a = load_model(str(checkpoint), architecture="hostile_support:tiny_cnn")
    b = load_model(str(ok), architecture="hostile_support:tiny_cnn")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    tol = 1e-6 if dtype == torch.float64 else 0.05
    torch.testing.assert_close(b.net(x), a.net(x), atol=tol, rtol=tol)


# ------------------------------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def field_run(tmp_path_factory) -> Path:
    """A manifest scan whose extra columns are named like export columns."""
    from test_scan_support import digit_images, mnist_handle, write_folder

    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("fields")
    images, labels = digit_images(20)
    paths = write_folder(base / "digits", images, labels)
    lines = ["path,label,id,p:3,outlier_score,map_path,field:id,correct,note"]
    lines += [f"{p},{p.parent.name},i{k},p{k},o{k},m{k},f{k},c{k},n{k}" for k, p in enumerate(paths)]
    (base / "m.csv").write_text("\n".join(lines) + "\n")
    scan(mnist_handle(), base / "m.csv", base / "run", batch_size=8, workers=0, progress=False)
    return base / "run"


# each manifest field -> the column it becomes (the prefix field: until the name is free)
FIELD_COLUMNS = {"id": "field:id", "p:3": "field:p:3", "outlier_score": "field:outlier_score",
                 "map_path": "field:map_path", "field:id": "field:field:id", "correct": "field:correct",
                 "note": "note"}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_renames_fields_named_like_columns(field_run, tmp_path, capsys, fmt):
    import pandas as pd

    out = tmp_path / f"x.{fmt}"
    rc, _, err = _cli(capsys, "export", str(field_run), "--out", str(out))
    assert rc == 0, err
    if fmt == "csv":
        header = out.read_text().splitlines()[0].split(",")
        assert len(header) == len(set(header)), [h for h in header if header.count(h) > 1]
        frame = pd.read_csv(out)
    elif fmt == "parquet":
        frame = pd.read_parquet(out)
    else:
        frame = pd.read_json(out, lines=True)
    assert len(set(frame.columns)) == len(frame.columns)
    for field, column in FIELD_COLUMNS.items():
        assert column in frame.columns, (field, list(frame.columns))
    ids = frame["id"].tolist()
    assert all(isinstance(i, (int, np.integer)) for i in ids)  # the run's ids, not the manifest's "i0"
    k = ids.index(1)
    assert frame["field:id"][k].startswith("i") and frame["field:field:id"][k].startswith("f")
    assert frame["note"][k].startswith("n") and frame["field:p:3"][k].startswith("p")
    assert frame["p:3"].dtype.kind == "f"  # the probability column keeps its name and values


def test_export_with_maps_keeps_map_path_and_the_field(field_run, tmp_path):
    from mikata.analysis.export import export_run

    # the run's model is a factory (code): it is named by the caller, never read from the run
    out = export_run(field_run, tmp_path / "x.parquet", maps_dir=tmp_path / "maps",
                     model="test_scan_support:mnist_handle")
    import pandas as pd

    frame = pd.read_parquet(out)
    assert frame["map_path"].str.endswith(".npy").all() and frame["field:map_path"].str.startswith("m").all()


@pytest.fixture(scope="module")
def latin_run(tmp_path_factory) -> Path:
    from test_scan_support import digit_images, mnist_handle, write_folder

    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("latin")
    images, labels = digit_images(12)
    paths = write_folder(base / "digits", images, labels)
    os.rename(os.fsencode(paths[0]), os.path.join(os.fsencode(paths[0].parent), b"lat\xe9n1.png"))
    scan(mnist_handle(), base / "digits", base / "run", batch_size=8, workers=0, progress=False)
    return base / "run"


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_of_non_utf8_names_writes_escaped_text(latin_run, tmp_path, capsys, fmt):
    import pandas as pd

    out = tmp_path / f"x.{fmt}"
    rc, _, err = _cli(capsys, "export", str(latin_run), "--out", str(out))
    assert rc == 0, err
    frame = {"parquet": pd.read_parquet, "csv": pd.read_csv, "json": lambda p: pd.read_json(p, lines=True)}[fmt](out)
    odd = [p for p in frame["path"] if os.path.basename(p).startswith("lat")]
    assert odd == [str(latin_run.parent / "digits" / "0") + "/lat\\xe9n1.png"]
    assert len(frame) == 12


def test_to_pandas_keeps_the_name_that_opens_the_file(latin_run):
    from mikata.analysis.run import open_run

    frame = open_run(latin_run).to_pandas()
    (odd,) = [p for p in frame["path"] if os.path.basename(p).startswith("lat")]
    assert os.path.isfile(odd) and os.fsencode(odd).endswith(b"lat\xe9n1.png")


# ------------------------------------------------------------------------------- terminal escape sequences
@pytest.fixture(scope="module")
def evil_data(tmp_path_factory) -> Path:
    from test_scan_support import digit_images, write_folder

    base = tmp_path_factory.mktemp("evil")
    images, labels = digit_images(12)
    write_folder(base / "digits", images, labels)
    (base / "digits" / "1" / EVIL).write_bytes(b"not an image")
    (base / "digits" / "1" / "line\nbreak.png").write_bytes(b"also not an image")
    return base


def test_scan_prints_escape_sequences_in_names_escaped(evil_data):
    r = subprocess.run(mikata_cmd("scan", "test_scan_support:mnist_handle", str(evil_data / "digits"), "--run",
                                  str(evil_data / "run"), "--workers", "0"), env=cli_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert ESC not in r.stderr + r.stdout
    assert "evil\\x1b[2J\\x1b]0;owned\\x1b\\.png" in r.stderr
    assert "line\\x0abreak.png" in r.stderr  # a newline in a name cannot forge a line of output


def test_an_error_naming_an_evil_file_is_one_escaped_line(evil_data, capsys):
    r = run_cli(capsys, "-q", "predict", "test_scan_support:mnist_handle", str(evil_data / "digits" / "1" / EVIL))
    assert ESC not in r.stderr + r.stdout
    assert "evil\\x1b[2J" in r.stderr
    assert r.returncode in (1, 2)


def test_log_lines_escape_control_characters(evil_data, capsys):
    # not --quiet: the info lines too
    r = run_cli(capsys, "scan", "test_scan_support:mnist_handle", str(evil_data / "digits"), "--run",
                str(evil_data / "run2"), "--workers", "0")
    assert r.returncode == 1
    assert ESC not in r.stderr + r.stdout, r.stderr


@pytest.mark.parametrize("text, expected", [
    ("plain.png", "plain.png"), ("a\x1b[31mb", "a\\x1b[31mb"), ("tab\there", "tab\\x09here"),
    ("nul\x00", "nul\\x00"), ("del\x7f", "del\\x7f"), ("csi\x9b2J", "csi\\x9b2J"),
    ("rtl\u202egnp.exe", "rtl\\u202egnp.exe"), ("日本.png", "日本.png"), ("é", "é"),
])
def test_shown_escapes_control_characters(text, expected):
    from mikata.data.filenames import shown

    assert shown(text) == expected


# --------------------------------------------------------------------------------------- serve --split
@pytest.fixture(scope="module")
def split_run(tmp_path_factory) -> Path:
    from hostile_support import small_run

    run = small_run(tmp_path_factory.mktemp("split"), n=24)
    with sqlite3.connect(run / "run.sqlite") as con:
        con.execute("UPDATE images SET split = CASE WHEN id % 2 = 0 THEN 'test' ELSE 'train' END")
    return run


@pytest.mark.parametrize("page", ["/image/1", "/img/1", "/thumb/1", "/view/1.png", "/map/1.png?method=gradcam",
                                  "/api/map-estimate/1?method=gradcam"])
def test_serve_split_answers_404_for_another_splits_image(split_run, page):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    c = TestClient(create_app(split_run, token="s" * 32, port=8765, handle=mnist_handle(), split="test"),
                   base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    assert c.get("/?token=" + "s" * 32).status_code == 200
    h = {"sec-fetch-site": "same-origin"}
    assert c.get(page, headers=h).status_code == 404  # image 1 is in split train
    assert c.get(page.replace("/1", "/2", 1), headers=h).status_code == 200  # image 2 is in split test


def test_serve_split_refuses_a_review_of_another_split(split_run):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    c = TestClient(create_app(split_run, token="s" * 32, port=8765, split="test"), base_url="http://127.0.0.1:8765",
                   raise_server_exceptions=False)
    c.get("/?token=" + "s" * 32)
    h = {"sec-fetch-site": "same-origin"}
    assert c.post("/api/review/1", json={"verdict": "wrong"}, headers=h).status_code == 404
    assert c.post("/api/review/2", json={"verdict": "wrong"}, headers=h).status_code == 200


# ----------------------------------------------------------------------------------------- --thresholds
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_thresholds_must_be_finite(split_run, capsys, value):
    rc, out, err = _cli(capsys, "audit", str(split_run), "--thresholds", f"outlier={value}")
    assert rc == 2 and out == ""
    v = float(value)
    assert err.strip() == f"mikata audit: error: --thresholds: outlier={v} is not a finite number; give one like " \
                          "outlier=0.05"


def test_a_finite_threshold_still_works(split_run, capsys):
    rc, out, err = _cli(capsys, "audit", str(split_run), "--thresholds", "outlier=0.2", "--json")
    assert rc == 0, err
    assert "nan" not in out.lower()


# ----------------------------------------------------------------------------------- read-only mount
def _mount_read_only(src: Path, mnt: Path) -> bool:
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode:
        return False
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return False
    return True


@pytest.mark.parametrize("live_wal", [False, True], ids=["checkpointed", "with-wal-files"])
def test_a_review_on_a_read_only_mount_is_409_with_one_message(split_run, tmp_path, live_wal):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    src = tmp_path / "src"
    shutil.copytree(split_run, src / "run")
    keep = None
    if live_wal:  # copied while a writer had uncommitted pages in its WAL: SQLite opens it, refuses the write
        keep = sqlite3.connect(src / "run" / "run.sqlite")
        keep.execute("PRAGMA wal_autocheckpoint=0")
        keep.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '1')")
        keep.commit()
    mnt = tmp_path / "mnt"
    if not _mount_read_only(src, mnt):
        pytest.skip("bind mounts are not available here")
    try:
        c = TestClient(create_app(mnt / "run", token="r" * 32, port=8765), base_url="http://127.0.0.1:8765",
                       raise_server_exceptions=False)
        assert c.get("/?token=" + "r" * 32).status_code == 200
        r = c.post("/api/review/2", json={"verdict": "wrong"}, headers={"sec-fetch-site": "same-origin"})
        assert r.status_code == 409
        assert r.text == (f"{mnt / 'run'} is read-only: maps cannot be cached and reviews cannot be saved here; copy "
                          "the run directory somewhere writable to record reviews")
        assert c.get("/image/2").status_code == 200 and c.get("/reviews.csv").status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if keep is not None:
            keep.close()


# ---------------------------------------------------------------------------- one undecodable image
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from hostile_support import digit_png

    folder = tmp_path_factory.mktemp("ev") / "imgs"
    folder.mkdir()
    for k in range(3):
        digit_png(folder / f"{k}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_evaluate_skips_an_undecodable_image_and_exits_1(photos, tmp_path, capsys):
    """In this process: test_evaluate_resume runs `python -m mikata evaluate` for real."""
    out = tmp_path / "ev"
    r = run_cli(capsys, "-q", "evaluate", "hostile_support:tiny_cnn", str(photos), "--methods", "gradcam",
                "--checks", "faithfulness", "--steps", "4", "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"mikata evaluate: skipped {photos / 'broken.png'}: not an image, or a format Pillow cannot read"]
    card = json.loads((out / "scorecard.json").read_text())
    assert card["images"] == 3 and card["skipped"] == [[str(photos / "broken.png"),
                                                         "not an image, or a format Pillow cannot read"]]


def test_evaluate_with_only_undecodable_images_is_refused(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    r = run_cli(capsys, "-q", "evaluate", "hostile_support:tiny_cnn", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                "--methods", "gradcam", "--checks", "faithfulness", "--out", str(tmp_path / "ev"))
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("mikata evaluate: error: none of the 2 images could be decoded (e.g. ")
    assert not (tmp_path / "ev" / "scorecard.json").exists()


@pytest.mark.parametrize("quiet", [True, False], ids=["-q", "verbose"])
def test_train_says_one_mikata_line_per_skip_and_no_python_warning(tmp_path, capsys, quiet):
    """-q in a real process (its own warning filters); the verbose run in this process (``run_cli`` shows the
    warnings a fresh process would)."""
    from sklearn.datasets import load_digits
    from PIL import Image

    d = load_digits()
    for c in (0, 1):
        (tmp_path / "data" / f"d{c}").mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(d.target == c)[:12]):
            Image.fromarray((d.images[i] * 15).astype(np.uint8)).save(tmp_path / "data" / f"d{c}" / f"{k}.png")
    broken = tmp_path / "data" / "d0" / "broken.png"
    broken.write_bytes(b"not a png")
    cmd = mikata_cmd("train", str(tmp_path / "data"), "--model", "efficientnet-lite0", "--out",
                     str(tmp_path / "m.safetensors"), "--epochs", "1", "--input-size", "32", "--freeze-until",
                     "blocks.11", "--threads", "1", "--split", "0.5,0.5")
    if quiet:
        r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)
    else:
        r = run_cli(capsys, *cmd[4:])  # mikata_cmd's ARGS without -q
    assert r.returncode == 1, r.stderr
    assert "Warning" not in r.stderr and "warnings.warn" not in r.stderr
    reason = "not an image, or a format Pillow cannot read"
    final = f"mikata train: skipped {broken}: {reason}"
    lines = [l for l in r.stderr.splitlines() if "broken.png" in l]
    if quiet:
        assert lines == [final]
    else:
        split = "train" if lines[0].endswith(f"in the train split ({broken}: {reason})") else "val"
        assert lines == [f"mikata train: skipped 1 unreadable file(s) in the {split} split ({broken}: {reason})", final]
