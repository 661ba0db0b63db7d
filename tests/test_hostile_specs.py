"""Issue 17, classes 1, 4 (model side) and 5 (checkpoint metadata): a model file or a run directory never
makes mikata import or call code, and every bad metadata field is refused in one line naming file and field."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cli_support import run_cli
from hostile_support import (DELETE, cli_env, digit_png, mikata_cmd, mnist_checkpoint, plant_module, rewrite_metadata,
                             set_manifest, small_run)
from mikata.errors import ModelLoadError
from mikata.models import load_model
from mikata.models.checkpoint_meta import CheckpointMetadataError

CODE_ARCHITECTURES = ["hostile_mod:make", "os:abort", "sys:exit", "cProfile:main", "builtins:exec",
                      "subprocess:call", "hostile_mod.sub:make"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return mnist_checkpoint(tmp_path_factory.mktemp("ckpt") / "digits.safetensors")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("hostile-run"))


# ------------------------------------------------------------------ class 1: code named inside a checkpoint
@pytest.mark.parametrize("arch", CODE_ARCHITECTURES)
def test_a_checkpoint_naming_code_is_refused_and_nothing_is_imported(ckpt, tmp_path, monkeypatch, arch):
    marker = plant_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", architecture=arch)
    with pytest.raises(ModelLoadError, match=r"field 'architecture' names code.*--arch") as e:
        load_model(str(bad))
    assert str(bad) in str(e.value) and arch in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("arch", ["../../etc/passwd", "torchvision:../../x", "timm:hf-hub:evil/model", "", "os.path",
                                  "efficientnet-lite9"])
def test_a_checkpoint_naming_no_known_architecture_is_refused(ckpt, tmp_path, arch):
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", architecture=arch)
    with pytest.raises(ModelLoadError):
        load_model(str(bad))


def test_the_architecture_typed_by_the_user_is_honoured(ckpt):
    h = load_model(str(ckpt), architecture="test_scan_support:mnist_handle")
    assert h.class_names == [str(i) for i in range(10)] and h.input_size == (28, 28)


def test_the_command_line_refuses_a_hostile_checkpoint_in_one_line(ckpt, tmp_path, capsys):
    marker = plant_module(tmp_path)
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", architecture="hostile_mod:make")
    img = digit_png(tmp_path / "x.png")
    r = subprocess.run(mikata_cmd("predict", str(bad), str(img)), env=cli_env(tmp_path), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--arch hostile_mod:make" in r.stderr
    assert not marker.exists()
    # the same checkpoint with the architecture typed by the user loads (in this process: the refusal above is
    # the command line's test)
    ok = run_cli(capsys, "-q", "predict", str(ckpt), str(img), "--arch", "test_scan_support:mnist_handle", "--json")
    assert ok.returncode == 0, ok.stderr


# -------------------------------------------------------------------- class 1: code named inside a run
@pytest.mark.parametrize("spec", ["hostile_mod:make", "os:system", "evil.pt", "evil.ts", "evil.pth"])
def test_a_run_manifest_naming_code_or_a_pickle_is_refused(run, tmp_path, monkeypatch, spec):
    from mikata.presentation.maps import MapService
    from mikata.models.run_model import RunModelError, load_run_model

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = plant_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    if spec.endswith((".pt", ".ts", ".pth")):
        (copy / spec).write_bytes(b"\x80\x04K\x01.")  # beside the run: still not loaded on the run's word
    set_manifest(copy, model_spec=spec)
    identity = json.loads((copy / "manifest.json").read_text())["identity"]
    with pytest.raises(RunModelError, match=r"mikata does not load it on a run's word.*--model"):
        load_run_model(identity, copy)
    with pytest.raises(RunModelError):
        MapService(copy).handle
    assert not marker.exists()


@pytest.mark.parametrize("fold_models", [["hostile_mod:make", "os:system"], ["evil.pt", "evil.pt"], "hostile_mod:make",
                                         [{"spec": "x"}, 1]])
def test_a_crossval_record_naming_code_or_garbage_is_refused_and_the_app_still_opens(run, tmp_path, monkeypatch,
                                                                                        fold_models):
    """A cross-validation run's fold models come from its manifest: the same checks as any run model."""
    from fastapi.testclient import TestClient

    from mikata.presentation.maps import MapService
    from mikata.models.run_model import RunModelError
    from mikata.server import create_app

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = plant_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (copy / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    m = json.loads((copy / "manifest.json").read_text())
    m["crossval"] = {"folds": 2, "fold_models": fold_models, "fold_weights_sha1": ["0" * 40, "0" * 40]}
    (copy / "manifest.json").write_text(json.dumps(m))
    with MapService(copy) as service, pytest.raises(RunModelError):
        service.handle_for()
    app = create_app(copy, token="t" * 32, port=8765)
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    assert c.get("/?token=" + "t" * 32).status_code == 200
    assert c.get("/map/1.png", headers={"sec-fetch-site": "same-origin"}).status_code == 409
    assert not marker.exists()


def test_report_and_serve_of_a_hostile_run_leave_maps_out_and_run_nothing(run, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mikata.report import write_report
    from mikata.server import create_app

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = plant_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    set_manifest(copy, model_spec="hostile_mod:make")
    r = write_report(copy, tmp_path / "r.html")
    assert r.maps == 0 and any("--model" in n for n in r.notes)
    app = create_app(copy, token="t" * 32, port=8765)
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    c.get("/?token=" + "t" * 32)
    resp = c.get("/map/1.png", headers={"sec-fetch-site": "same-origin"})
    assert resp.status_code == 409 and "--model" in resp.text
    assert not marker.exists()


def test_a_checkpoint_planted_in_a_parent_folder_is_never_loaded(run, tmp_path, ckpt):
    from mikata.models.run_model import load_run_model

    copy = tmp_path / "a" / "b" / "run"
    shutil.copytree(run, copy)
    for parent in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        shutil.copy(ckpt, parent / "model.safetensors")
    set_manifest(copy, model_spec="somewhere/model.safetensors")
    identity = json.loads((copy / "manifest.json").read_text())["identity"]
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_run_model(identity, copy)


def test_a_run_model_beside_the_run_or_typed_is_used_only_with_the_scanned_weights(run, tmp_path, ckpt):
    from mikata.models.run_model import RunModelError, load_run_model, run_model_spec

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copy(ckpt, copy / "digits.safetensors")
    identity = json.loads((copy / "manifest.json").read_text())["identity"]
    assert run_model_spec(dict(identity, model_spec="old/digits.safetensors"), copy) == str(copy / "digits.safetensors")
    h = load_run_model(identity, copy, model="test_scan_support:mnist_handle")  # typed by the user: honoured
    assert h.num_classes == 10
    with pytest.raises(RunModelError, match="weights hash differs"):
        load_run_model(dict(identity, weights_sha1="0" * 40), copy, model="test_scan_support:mnist_handle")


# ------------------------------------------------------------------------- class 4: huge claimed input size
@pytest.mark.parametrize("size", [[100000, 100000], [4097, 224], [224, 10**9]])
def test_a_checkpoint_claiming_a_huge_input_is_refused_at_load(ckpt, tmp_path, size):
    bad = rewrite_metadata(ckpt, tmp_path / "huge.safetensors", input_size=size)
    with pytest.raises(CheckpointMetadataError, match=r"'input_size'.*1\.\.4096") as e:
        load_model(str(bad))
    assert e.value.field == "input_size" and str(bad) in str(e.value)


def test_a_huge_input_size_is_refused_from_python_too():
    from torch import nn

    from mikata.models.handle import ModelHandle

    with pytest.raises(ModelLoadError, match="1..4096"):
        ModelHandle(net=nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(2)), class_names=["a", "b"],
                    input_size=(100000, 100000))
    with pytest.raises(ModelLoadError, match="1..4096"):
        load_model("test_scan_support:mnist_handle", input_size=50000)


# --------------------------------------------------------------------- class 5: each bad metadata field
BAD_FIELDS = [
    ("architecture", DELETE, "architecture"), ("input_size", DELETE, "input_size"),
    ("class_names", DELETE, "class_names"), ("mean", DELETE, "mean"), ("std", DELETE, "std"),
    ("input_size", [0, 0], "input_size"), ("input_size", [-28, 28], "input_size"), ("input_size", "28", "input_size"),
    ("input_size", ["28", "28"], "input_size"), ("input_size", [28], "input_size"), ("input_size", [True, 28], "input_size"),
    ("input_size", [28.5, 28], "input_size"), ("std", [0], "std"), ("std", [0.0], "std"), ("std", [-0.3], "std"),
    ("std", ["0.3"], "std"), ("mean", [0.1, 0.2, 0.3], "mean"), ("mean", [float("nan")], "mean"),
    ("in_channels", 7, "in_channels"), ("in_channels", 0, "in_channels"), ("in_channels", "1", "in_channels"),
    ("interpolation", "lanczos9", "interpolation"), ("interpolation", None, "interpolation"),
    ("class_names", [], "class_names"), ("class_names", [1, 2], "class_names"), ("class_names", "0123", "class_names"),
    ("class_names", ["a", "a"], "class_names"), ("crop_fraction", 0, "crop_fraction"),
    ("crop_fraction", "x", "crop_fraction"), ("default_layer", 5, "default_layer"), ("head", ["x"], "head"),
    ("format", "other/9", "format"), ("architecture", 5, "architecture"),
]


@pytest.mark.parametrize("field,value,named", BAD_FIELDS)
def test_each_bad_metadata_field_is_one_error_naming_file_and_field(ckpt, tmp_path, field, value, named):
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", **{field: value})
    with pytest.raises(CheckpointMetadataError) as e:
        load_model(str(bad), architecture="test_scan_support:mnist_handle")
    assert e.value.field == named and str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("raw,says", [("{not json", "not JSON"), ("[1, 2]", "JSON list"), ('"text"', "JSON str"),
                                      ("null", "JSON NoneType"), ("[" * 100000 + "]" * 100000, "not JSON")])
def test_metadata_that_is_not_a_json_object_is_one_error(ckpt, tmp_path, raw, says):
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", raw=raw)
    with pytest.raises(ModelLoadError, match=says) as e:
        load_model(str(bad))
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("change", [{"std": [0]}, {"in_channels": 7}, {"raw": "[]"}, {"input_size": [100000, 100000]}])
def test_the_command_line_says_one_line_and_exits_2_on_bad_metadata(ckpt, tmp_path, change, capsys):
    raw = change.pop("raw", None)
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", raw=raw, **change)
    r = run_cli(capsys, "-q", "predict", str(bad), str(digit_png(tmp_path / "x.png")), "--arch",
                "test_scan_support:mnist_handle")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nan%" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr
