"""Devices: every command with an explicit ``--device cpu``, the unavailable-device error, bf16
autocast selection, device memory budgets and the out-of-memory halving (with injected errors;
this machine has no GPU, so the CUDA paths are exercised by their logic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mikata.devices as devices
from mikata.cli import main
from mikata.devices import (DeviceUnavailableError, autocast_dtype, for_chunks, memory_budget_mb, resolve_device,
                            split_on_oom)
from mikata.errors import ChoiceError


def tiny_net() -> nn.Module:
    """A small seeded CNN for 3 x 64 x 64 inputs: every method and command runs on it in well under a second.

    Also a ``package.module:factory`` spec (``test_device:tiny_net``), which ``mikata train`` can rebuild.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)).eval()


def tiny_handle():
    from mikata.models.handle import ModelHandle

    return ModelHandle(net=tiny_net(), class_names=["a", "b", "c", "d"], input_size=(64, 64), crop_fraction=1.0,
                       default_layer="3", spec="test_device:tiny_handle", metadata={"architecture": "test_device:tiny_net"})


SPEC = "test_device:tiny_handle"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """Two classes of real photo crops (64 px), 4 images each, plus the photo paths."""
    root = tmp_path_factory.mktemp("device-data")
    names = ["chelsea", "coffee", "astronaut", "rocket"]
    for k, name in enumerate(names):
        img = Image.open(photos[name]).convert("RGB")
        for j in range(2):
            w, h = img.size
            crop = img.crop((j * w // 4, 0, j * w // 4 + w // 2, h // 2)).resize((64, 64))
            path = root / ("a" if k < 2 else "b") / f"{name}{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop.save(path)
    return root


# ------------------------------------------------------------------------------------ choosing
def test_resolve_device_auto_env_and_unknown(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv(devices.DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ChoiceError, match="valid devices: auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu")
    # auto prefers CUDA, then MPS
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0) and resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceUnavailableError, match=r"2 CUDA device\(s\), cuda:0..cuda:1"):
        resolve_device("cuda:2")


def test_unavailable_cuda_names_the_build_and_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError) as e:
        resolve_device("cuda")
    msg = str(e.value)
    assert torch.__version__ in msg and "--device cpu" in msg and "CUDA build of torch" in msg


def test_cli_device_cuda_here_is_one_line_and_exit_2(monkeypatch, photos, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in (["predict", "efficientnet-lite0", str(photos["chelsea"]), "--device", "cuda"],
                 ["train", str(photos["chelsea"]), "--model", "x", "--out", "m.safetensors", "--device", "cuda:0"],
                 ["serve", "no-such-run", "--device", "cuda"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "torch " in err and "--device cpu" in err, err


def test_handle_device_to_and_load_model_device(lite0):
    from mikata.models import load_model

    assert lite0.device == torch.device("cpu") and lite0.to("cpu") is lite0
    h = load_model(SPEC, device="cpu", precision="bf16")
    assert h.device == torch.device("cpu") and h.precision == "bf16"
    with pytest.raises(ChoiceError):
        load_model(SPEC, precision="fp8")


# ----------------------------------------------------------------------------------- precision
def test_autocast_selection():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype(cpu, "auto") is None and autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16 and autocast_dtype(cpu, "fp16") is torch.float16
    assert autocast_dtype(cuda, "auto", bf16_supported=lambda: True) is torch.bfloat16
    assert autocast_dtype(cuda, "auto", bf16_supported=lambda: False) is None  # pre-Ampere: fp32
    assert autocast_dtype(cuda, "auto", gradients=True, bf16_supported=lambda: True) is None  # gradients: fp32
    assert autocast_dtype(cuda, "bf16", gradients=True) is torch.bfloat16  # unless asked
    with pytest.raises(ChoiceError):
        autocast_dtype(cpu, "int8")


def test_bf16_predictions_stay_close_to_fp32_on_the_mnist_cnn():
    from test_scan_support import digit_images, mnist_handle

    h = mnist_handle()
    images, _ = digit_images(64)
    x = h.preprocess(images)
    with torch.inference_mode():
        p32 = h.model(x).softmax(1)
        h.precision = "bf16"
        with h.autocast():
            p16 = h.model(x).float().softmax(1)
    assert (p32.argmax(1) == p16.argmax(1)).float().mean() >= 0.95
    assert float((p32 - p16).abs().max()) < 0.1


# ------------------------------------------------------------------------------------- memory
def test_memory_budget_from_free_device_memory():
    assert memory_budget_mb(torch.device("cpu")) == 64
    free = lambda d: (8 * 2**30, 80 * 2**30)  # noqa: E731 - 8 GB free of 80
    assert memory_budget_mb(torch.device("cuda", 0), mem_get_info=free) == 4096
    assert memory_budget_mb(torch.device("cuda", 0), fraction=0.25, mem_get_info=free) == 2048


def test_chunk_size_uses_the_device_budget_off_the_cpu(monkeypatch):
    from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size

    x_cpu = torch.zeros(1, 3, 224, 224)
    x_dev = torch.zeros(1, 3, 224, 224, device="meta")  # stands in for a GPU tensor: shape and dtype only
    monkeypatch.setattr(devices, "memory_budget_mb", lambda d: 16384.0)
    small, big = chunk_size(x_cpu, DEFAULT_BUDGET_MB), chunk_size(x_dev, DEFAULT_BUDGET_MB)
    assert small == 1 and big == 256  # 64 MB rule vs. 16 GB free (the cap grows 4x on a GPU)
    assert chunk_size(x_dev, 128) == 3  # an explicit smaller budget still caps


def _oom(msg: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
    return torch.OutOfMemoryError(msg)


def test_for_chunks_halves_on_oom_and_covers_every_item_once():
    seen: list[tuple[int, int]] = []

    def fn(start, stop):
        if stop - start > 3:
            raise _oom()
        seen.append((start, stop))

    assert for_chunks(10, 8, fn) == 2
    assert [i for a, b in seen for i in range(a, b)] == list(range(10))
    with pytest.raises(torch.OutOfMemoryError):  # a single item that does not fit is the real error
        for_chunks(3, 4, lambda a, b: (_ for _ in ()).throw(_oom()))
    with pytest.raises(ValueError):  # other errors are never retried
        for_chunks(3, 4, lambda a, b: (_ for _ in ()).throw(ValueError("bad")))
    assert devices.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))


def test_split_on_oom_merges_halves():
    calls = []

    def fn(x):
        calls.append(len(x))
        if len(x) > 2:
            raise _oom()
        return x * 2

    out = split_on_oom(fn, torch.arange(7.0), torch.cat)
    assert torch.equal(out, torch.arange(7.0) * 2) and max(calls[1:]) <= 4


class _Tight(nn.Module):
    """Wraps a net and raises the CUDA out-of-memory error for batches above ``limit``."""

    def __init__(self, net: nn.Module, limit: int):
        super().__init__()
        self.inner, self.limit, self.refused = net, limit, 0

    def forward(self, x):
        if x.shape[0] > self.limit:
            self.refused += 1
            raise _oom()
        return self.inner(x)


def _tight_handle(limit: int):
    from mikata.models.handle import ModelHandle

    return ModelHandle(net=_Tight(tiny_net(), limit), class_names=["a", "b", "c", "d"], input_size=(64, 64),
                       crop_fraction=1.0, default_layer="inner.3")


def test_occlusion_smoothgrad_ig_survive_out_of_memory_with_the_same_maps():
    from mikata.attribution import explain

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    methods = ["occlusion", "smoothgrad", "integrated-gradients", "scorecam"]
    opts = {"occlusion": {"window": 16, "stride": 8}, "smoothgrad": {"samples": 6}, "integrated-gradients": {"steps": 6}}
    free = explain(_tight_handle(10_000), x, methods, "top1", options=opts)
    tight = _tight_handle(4)
    got = explain(tight, x, methods, "top1", options=opts)
    assert tight.net.refused > 0
    for a, b in zip(free, got):
        assert a.method == b.method and torch.allclose(a.maps, b.maps, atol=1e-5), a.method


def test_scan_splits_a_batch_that_runs_out_of_memory(folder, tmp_path, monkeypatch):
    import mikata.scanning.scan as scan_mod
    from mikata.runs.store import RunStore

    plain = scan_mod.scan(tiny_handle(), folder, tmp_path / "plain", batch_size=8, workers=0, progress=False)
    real = scan_mod.run_batch

    def tight(handle, x, *a, **kw):
        if x.shape[0] > 3:
            raise _oom()
        return real(handle, x, *a, **kw)

    monkeypatch.setattr(scan_mod, "run_batch", tight)
    split = scan_mod.scan(tiny_handle(), folder, tmp_path / "split", batch_size=8, workers=0, progress=False)
    assert plain.computed == split.computed == 8
    with RunStore.open(tmp_path / "plain") as a, RunStore.open(tmp_path / "split") as b:
        pa, pb = a.vectors("probs"), b.vectors("probs")
        assert np.allclose(pa, pb, atol=1e-3)


# ---------------------------------------------------------------------- every command on --device cpu
def test_every_command_runs_with_device_cpu(folder, photos, tmp_path, capsys, monkeypatch, caplog):
    caplog.set_level("INFO", logger="mikata.cli")
    img = str(next(folder.glob("a/*.png")))
    d = ["--device", "cpu"]
    assert main(["predict", SPEC, img, "--json", *d, "--precision", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in "abcd"
    assert main(["layers", SPEC, *d]) == 0 and "1,152 parameters" in capsys.readouterr().out
    from mikata.attribution import METHODS, registry

    cnn_methods = [m for m in METHODS if registry.get(m).kind != "attention"]  # the rest need a transformer
    assert main(["explain", SPEC, img, "--methods", ",".join(cnn_methods), "--samples", "3", "--steps", "3",
                 "--out", str(tmp_path / "ex"), "--json", *d]) == 0
    assert {m["method"] for m in json.loads(capsys.readouterr().out)[0]["maps"]} == set(cnn_methods)
    assert main(["visualize", SPEC, "--layer", "3", "--channels", "0:2", "--size", "32", "--steps", "2",
                 "--out", str(tmp_path / "vis"), *d]) == 0
    assert main(["activations", SPEC, img, "--layer", "3", "--out", str(tmp_path / "act"), *d]) == 0
    assert main(["filters", SPEC, "--out", str(tmp_path / "flt"), *d]) == 0
    assert main(["train", str(folder), "--model", "test_device:tiny_net", "--out", str(tmp_path / "m.safetensors"),
                 "--epochs", "1", "--split", "0.5,0.5", "--input-size", "64", "--workers", "0", *d]) == 0
    run = tmp_path / "run"
    assert main(["scan", SPEC, str(folder), "--run", str(run), "--workers", "0", "--gradcam", *d,
                 "--precision", "auto"]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "r.html"), "--map-classes", "1", "--model", SPEC,
                 "--json", *d]) == 0
    assert json.loads(capsys.readouterr().out)["maps"] > 0
    assert main(["evaluate", SPEC, img, "--methods", "gradcam,occlusion", "--steps", "3", "--stages", "1",
                 "--samples", "1", "--out", str(tmp_path / "ev"), *d]) == 0
    capsys.readouterr()

    # serve and demo block or take minutes: check that the device reaches the library call
    import mikata.demo
    import mikata.server.launch

    got = {}
    monkeypatch.setattr(mikata.server.launch, "serve", lambda run_dir, **kw: got.update(serve=kw["device"]))
    monkeypatch.setattr(mikata.demo, "run_demo", lambda out, quick, device: got.update(demo=device) or
                        type("R", (), {"seconds": 0.0, "outputs": []})())
    assert main(["serve", str(run), *d]) == 0 and main(["demo", "--quick", *d]) == 0
    assert got == {"serve": torch.device("cpu"), "demo": torch.device("cpu")}
    announced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device: ")]
    assert announced and all(m.startswith("device: cpu (torch ") for m in announced)


def test_server_maps_on_demand_use_the_runs_model_on_the_device(folder, tmp_path):
    from mikata.presentation.maps import MapService
    from mikata.scanning.scan import scan

    scan(tiny_handle(), folder, tmp_path / "run", batch_size=8, workers=0, progress=False)
    service = MapService(tmp_path / "run", model=SPEC, device="cpu")
    assert service.handle.device == torch.device("cpu")
    m = service.map(1, "gradcam")
    assert m.shape == (64, 64) and np.isfinite(m).all()
