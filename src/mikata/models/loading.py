"""``load_model(spec)``: one entry point for every kind of model mikata accepts.

Specs:
    efficientnet-lite0 | -lite1 | -lite2   built in, real ImageNet weights from PyPI packages
    torchvision:NAME                        e.g. torchvision:resnet18 (its own preprocessing)
    timm:NAME                               e.g. timm:tf_efficientnet_lite0
    ...NAME?weights=random | ?weights=FILE  torchvision/timm without a download: random weights
                                            (seeded) or a local state dict (.safetensors, or .pth read
                                            with weights_only)
    hf:PATH, or a folder with config.json   a local Hugging Face image classifier (transformers)
    PATH.safetensors                        a mikata checkpoint (weights + JSON metadata)
    PATH.pt / .pth / .ts                    TorchScript; a pickled whole model only with trust=True
    package.module:factory                  a function returning an nn.Module (or a ModelHandle)

Trust: only what the caller types may name code to run. A ``package.module:factory`` spec is
honoured when it is the ``spec`` (or ``architecture``) argument itself; an architecture named
inside a checkpoint's metadata must come from the closed set in ``checkpoint_meta.py``
(built-in variants, ``torchvision:NAME``, ``timm:NAME``), otherwise loading is refused and the
message says how to name the architecture yourself (``--arch`` / ``architecture=``).

Example:
    >>> handle = load_model("efficientnet-lite0")               # doctest: +SKIP
    >>> handle.class_names[281]                                  # doctest: +SKIP
    'tabby'
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import zipfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from mikata.errors import ModelLoadError
from mikata.models.checkpoint_meta import (
    check_input_size,
    check_registered_name,
    is_code_spec,
    validate_checkpoint_metadata,
)
from mikata.models.efficientnet_lite import VARIANTS, LitePreprocessing, build_efficientnet_lite, load_packaged_weights
from mikata.models.handle import IMAGENET_MEAN, IMAGENET_STD, ModelHandle
from mikata.models.outputs import extract_logits
from mikata.models.probe import Probe, probe_model
from mikata.models.huggingface import is_hf_folder, load_hf
from mikata.models.layers import trace_and_probe
from mikata.models.torchvision_ops import import_torchvision

CHECKPOINT_FORMAT = "mikata-checkpoint/1"
SPEC_FORMS = ("efficientnet-lite0|1|2, torchvision:NAME, timm:NAME (add ?weights=random or ?weights=FILE to "
              "skip the download), hf:FOLDER, a .safetensors checkpoint, a TorchScript .pt/.ts file, or "
              "package.module:factory")


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    text = resources.files("mikata.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000
    return names


def load_model(
    spec: str,
    *,
    pretrained: bool = True,
    trust: bool = False,
    class_names: list[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    architecture: str | None = None,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
) -> ModelHandle:
    """Load a classifier as a ``ModelHandle`` (in eval mode). See the module doc for the specs.

    ``pretrained=False`` builds torchvision/timm/built-in architectures with random weights
    (for tests; never downloads). ``trust=True`` allows unpickling a whole model from a file,
    which can run arbitrary code: only for files you made yourself. ``architecture`` is the
    architecture of a ``.safetensors`` checkpoint, typed by you: needed when the checkpoint was
    trained from a ``package.module:factory`` model, which its metadata cannot choose by itself.
    ``device``: where the model runs ("auto", "cpu", "cuda", "cuda:N", "mps"; ``None`` reads
    ``$MIKATA_DEVICE``); it is checked before anything loads. ``precision`` ("auto", "fp32", "bf16", "fp16") is for
    forward-only work; ``auto`` is bf16 on a capable CUDA GPU, fp32 elsewhere.

    Example:
        >>> handle = mikata.load_model("efficientnet-lite0")     # real ImageNet weights, installed with mikata
        >>> handle.num_classes, handle.class_names[281], handle.default_layer
        (1000, 'tabby', 'head')
    """
    from mikata.devices import check_precision, resolve_device

    target = resolve_device(device)
    precision = check_precision(precision)
    spec = str(spec)
    path = Path(spec)
    if spec in VARIANTS:
        handle = _builtin(spec, pretrained)
    elif spec.startswith(("torchvision:", "timm:")):
        handle = _hub(spec, pretrained, _size(input_size))
    elif spec.startswith("hf:") or is_hf_folder(path):
        handle = _hf(Path(spec[3:] if spec.startswith("hf:") else spec), trust)
    elif path.suffix == ".safetensors":
        handle = load_checkpoint(path, architecture=architecture)
    elif path.suffix in (".pt", ".pth", ".ts", ".pt2", ".jit") or path.is_file():
        handle = _from_file(path, trust)
    elif is_code_spec(spec):
        handle = _factory(spec)
    else:
        raise ModelLoadError(f"cannot load model {spec!r}: no such file, and not a known spec. Use {SPEC_FORMS}.")
    overrides = {"class_names": class_names, "mean": mean, "std": std}
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        overrides["input_size"] = check_input_size(size, "input_size")
    if any(v is not None for v in overrides.values()):
        handle = _rebuilt(handle, **{k: v for k, v in overrides.items() if v is not None})
    handle.precision = precision
    return handle.to(target)


def _rebuilt(handle: ModelHandle, **changes) -> ModelHandle:
    fields = {k: getattr(handle, k) for k in ("net", "class_names", "default_layer", "spec", "metadata",
                                             "precision")}
    pixels = {k: changes.pop(k) for k in ("input_size", "mean", "std") if k in changes}
    fields.update(changes)
    probe = None
    if "input_size" in pixels and tuple(pixels["input_size"]) != tuple(handle.input_size) \
            and not isinstance(handle.net, torch.jit.ScriptModule):
        # the default CAM layer depends on the map sizes at this input size (2x2 at 64 px is too coarse)
        traced, probe = trace_and_probe(handle.net, handle.in_channels, tuple(pixels["input_size"]))
        fields["default_layer"] = next((l.name for l in traced if l.is_default), fields["default_layer"])
    return ModelHandle(**fields, preprocessing=dataclasses.replace(handle.preprocessing, **pixels), probe=probe)


def _finish(net: nn.Module, spec: str, class_names=None, **kw) -> ModelHandle:
    """Fill in what a handle needs and the caller did not give: channels, classes, default layer.

    One dummy forward answers all three questions where it can: the handle's probe (outputs, head)
    comes from the forward that traces the layers or counts the classes, not from one more."""
    net.eval()
    in_channels = kw.pop("in_channels", None) or _first_conv_in_channels(net)
    size = tuple(kw.pop("input_size", (224, 224)))
    default = kw.pop("default_layer", None)
    probe: Probe | None = None
    if default is None and not isinstance(net, torch.jit.ScriptModule):  # TorchScript cannot be hooked
        traced, probe = trace_and_probe(net, in_channels, size)
        default = next((l.name for l in traced if l.is_default), None)
    if class_names is None:
        if probe is None:
            probe = probe_model(net, in_channels, size)
        k = probe.outputs
        if k is None:  # the forward fails, or returns no class scores: its own error, as the real call gives
            with torch.inference_mode():
                from mikata.devices import module_device

                k = extract_logits(net(torch.zeros(1, in_channels, *size, device=module_device(net)))).shape[-1]
        class_names = list(imagenet_class_names()) if k == 1000 else [f"class_{i}" for i in range(k)]
    return ModelHandle(net=net, class_names=list(class_names), input_size=size, in_channels=in_channels,
                       default_layer=default, spec=spec, probe=probe, **kw)


def _first_conv_in_channels(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


# ---------------------------------------------------------------------------------------- built in
def _builtin(variant: str, pretrained: bool, num_classes: int = 1000) -> ModelHandle:
    net = build_efficientnet_lite(variant, num_classes)
    if pretrained:
        load_packaged_weights(net, variant)
    size = VARIANTS[variant][2]
    pre = LitePreprocessing()
    return _finish(net, variant, input_size=(size, size), mean=pre.mean, std=pre.std,
                   crop_fraction=pre.crop_fraction, interpolation="bicubic", default_layer="head",
                   metadata={"architecture": variant})


# ------------------------------------------------------------------------------ torchvision / timm
def _torchvision(name: str, pretrained: bool) -> ModelHandle:
    tv = import_torchvision()
    check_registered_name("torchvision", name, tv.models.list_models())
    try:
        weights = tv.models.get_model_weights(name).DEFAULT if pretrained else None
    except ValueError as e:
        raise ModelLoadError(f"torchvision has no model {name!r}: {e}") from e
    net = tv.models.get_model(name, weights=weights)
    kw: dict = {"input_size": (224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bilinear"}
    class_names = None
    if weights is not None:
        t = weights.transforms()
        crop = int(t.crop_size[0])
        kw.update(input_size=(crop, crop), mean=tuple(t.mean), std=tuple(t.std),
                  crop_fraction=crop / int(t.resize_size[0]))
        class_names = list(weights.meta["categories"])
    return _finish(net, f"torchvision:{name}", class_names, metadata={"architecture": f"torchvision:{name}"}, **kw)


def _timm(name: str, pretrained: bool, input_size: tuple[int, int] | None = None) -> ModelHandle:
    """A timm model; ``input_size``: built for that size where the architecture takes one (``img_size``:
    ViT, DeiT, Swin, EVA... whose position embeddings or windows depend on it; timm resamples
    pretrained position embeddings), else the size only changes the preprocessing."""
    import_torchvision()  # timm imports torchvision; give its clear message first
    import timm
    from timm.data import resolve_data_config

    check_registered_name("timm", name, timm.list_models())
    try:
        net = None
        if input_size is not None:
            try:
                net = timm.create_model(name, pretrained=pretrained, img_size=tuple(input_size))
            except TypeError:  # a CNN: no img_size argument, any input size works
                net = None
        if net is None:
            net = timm.create_model(name, pretrained=pretrained)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise ModelLoadError(f"timm could not create {name!r}: {e}") from e
    cfg = resolve_data_config({}, model=net)
    size = tuple(input_size) if input_size is not None else tuple(cfg["input_size"][1:])
    return _finish(net, f"timm:{name}", input_size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                   crop_fraction=float(cfg.get("crop_pct", 0.875)), interpolation=cfg.get("interpolation", "bicubic"),
                   in_channels=int(cfg["input_size"][0]), metadata={"architecture": f"timm:{name}"})


def split_weights(spec: str) -> tuple[str, str | None]:
    """``("timm:NAME", "random" | FILE | None)`` from ``timm:NAME?weights=...``; other queries are refused."""
    base, sep, query = spec.partition("?")
    if not sep:
        return spec, None
    key, eq, value = query.partition("=")
    if key != "weights" or not eq or not value:
        raise ModelLoadError(f"{spec!r}: the only option after '?' is weights=random or weights=FILE "
                             "(a local .safetensors / .pth state dict)")
    return base, value


def _size(input_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    return check_input_size((input_size, input_size) if isinstance(input_size, int) else tuple(input_size), "input_size")


def _hub(spec: str, pretrained: bool, input_size: tuple[int, int] | None = None) -> ModelHandle:
    """torchvision:NAME / timm:NAME, optionally ?weights=random|FILE (no download then)."""
    base, weights = split_weights(spec)
    kind, name = base.split(":", 1)

    def build(name: str, pretrained: bool) -> ModelHandle:
        if kind == "torchvision":
            return _torchvision(name, pretrained)
        return _timm(name, pretrained, input_size)
    if weights is None:
        try:
            return build(name, pretrained)
        except ModelLoadError:
            raise
        except Exception as e:  # no network, hub errors: one line saying how to go on offline
            first = str(e).splitlines()[0] if str(e) else ""
            raise ModelLoadError(f"{base}: could not get the pretrained weights ({type(e).__name__}: {first[:200]}); "
                                 f"offline, use {base}?weights=random (random weights) or {base}?weights=FILE "
                                 "(a local state dict)") from e
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random weights are the same every time: a scan of them can be resumed
        handle = build(name, False)
    handle.spec = spec
    if weights != "random":
        _load_state(handle, Path(weights), base)
    return handle


def _load_state(handle: ModelHandle, path: Path, base: str) -> None:
    """A local state dict into ``handle.net`` (safetensors, or a .pth read with ``weights_only``)."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found (from {base}?weights={path}); give an existing "
                             ".safetensors or .pth state dict, or ?weights=random")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable state dict ({type(e).__name__}); save one with "
                             "torch.save(model.state_dict(), ...) or safetensors") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, not a state dict")
    try:
        handle.net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelLoadError(f"{path}: weights do not fit {base}: {str(e).splitlines()[0]}") from e


def _hf(path: Path, trust: bool) -> ModelHandle:
    net, pixels, names = load_hf(path, trust)
    return _finish(net, f"hf:{path}", names, metadata={}, **pixels)


# ------------------------------------------------------------------------------------------ files
def _from_file(path: Path, trust: bool) -> ModelHandle:
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_script = any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
        if is_script:
            net = torch.jit.load(str(path), map_location="cpu")
            return _finish(net, str(path), metadata={})
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not trust:
            raise ModelLoadError(
                f"{path} holds a pickled model, which can run arbitrary code when loaded; mikata did not "
                "load it. If you made this file yourself, pass --trust (trust=True); better, save a "
                "mikata .safetensors checkpoint or TorchScript."
            ) from e
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return _finish(obj, str(path), metadata={})
    raise ModelLoadError(
        f"{path} holds a {type(obj).__name__} (a state dict?), not a model; a bare state dict has no "
        "architecture: load the architecture with package.module:factory, or save a mikata checkpoint")


def _factory(spec: str) -> ModelHandle:
    module_name, func_name = spec.split(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise ModelLoadError(f"cannot import {spec!r}: {e}. Use {SPEC_FORMS}.") from e
    obj = fn()
    if isinstance(obj, ModelHandle):
        return obj
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{spec} returned a {type(obj).__name__}, not an nn.Module or ModelHandle")
    return _finish(obj, spec, metadata={"architecture": spec})


# ------------------------------------------------------------------------------------ checkpoints
def build_architecture(arch: str, allow_code: bool = False, input_size: tuple[int, int] | None = None) -> ModelHandle:
    """The architecture behind a spec, with random weights (never downloads).

    ``input_size``: for timm architectures whose shape depends on it (a ViT's position embedding).
    Only the closed set (built-in variants, ``torchvision:NAME``, ``timm:NAME``) unless
    ``allow_code``: a ``package.module:factory`` imports and calls code, so it is built only when
    the caller typed it (never when it was read from a file).
    """
    if arch in VARIANTS:
        return _builtin(arch, pretrained=False)
    if arch.startswith("torchvision:"):
        return _torchvision(arch.split(":", 1)[1], pretrained=False)
    if arch.startswith("timm:"):
        return _timm(arch.split(":", 1)[1], pretrained=False, input_size=input_size)
    if allow_code and is_code_spec(arch):
        return _factory(arch)
    raise ModelLoadError(f"architecture {arch!r} is not one mikata builds from data; use one of "
                         f"{', '.join(VARIANTS)}, torchvision:NAME or timm:NAME, or pass a package.module:factory "
                         "you wrote yourself as the model spec")


def replace_head(net: nn.Module, num_classes: int, name: str | None = None) -> str:
    """Swap the head for a fresh ``nn.Linear`` with ``num_classes`` outputs; return its name.

    ``name``: the head as the handle resolved it at load (``ModelHandle.head_layer``, the last
    Linear a forward calls); without it, the last Linear registered.
    """
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelLoadError("no nn.Linear classifier layer found to replace")
    name, old = next(((n, m) for n, m in linears if n == name), linears[-1])
    parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
    setattr(parent, name.rsplit(".", 1)[-1], nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return name


def save_checkpoint(handle: ModelHandle, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``handle`` as ``.safetensors`` with the metadata that ``load_model`` needs.

    Example:
        >>> mikata.save_checkpoint(handle, "lite0.safetensors").name
        'lite0.safetensors'
        >>> mikata.load_model("lite0.safetensors").class_names == handle.class_names
        True
    """
    from safetensors.torch import save_file

    arch = handle.metadata.get("architecture")
    if not arch:
        raise ModelLoadError(f"{handle.spec}: no rebuildable architecture is known for this model "
                             "(TorchScript and pickled models cannot be saved as mikata checkpoints)")
    meta = {
        "format": CHECKPOINT_FORMAT, "architecture": arch, "head": handle.metadata.get("head"),
        "class_names": handle.class_names, "input_size": list(handle.input_size), "mean": list(handle.mean),
        "std": list(handle.std), "crop_fraction": handle.crop_fraction, "interpolation": handle.interpolation,
        "resize": handle.preprocessing.resize, "in_channels": handle.in_channels, "default_layer": handle.default_layer,
        **{k: v for k, v in handle.metadata.items() if k not in ("architecture", "head")},
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous().clone() for k, v in handle.net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"mikata": json.dumps(meta)})
    return path


def check_weight_values(path: str | Path, state: dict, net: nn.Module) -> None:
    """Refuse weights that would load but predict nonsense: a tensor stored as an integer or bool type where the
    model holds floating-point values (``load_state_dict`` would cast it silently), or holding NaN/inf."""
    own = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    for name, tensor in state.items():
        target = own.get(name)
        if target is None or not target.dtype.is_floating_point:
            continue  # an unknown name is load_state_dict's error; integer buffers (counters) stay integers
        if not tensor.dtype.is_floating_point:
            raise ModelLoadError(f"{path}: tensor {name!r} is stored as {str(tensor.dtype).replace('torch.', '')}, "
                                 "but the model's weights are floating point; this is not a trained checkpoint: "
                                 "save the model again with mikata (or safetensors from float weights)")
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ModelLoadError(f"{path}: tensor {name!r} holds {bad} NaN/inf value(s) of {tensor.numel()}; the "
                                 "training diverged or the file is damaged: use an earlier checkpoint")


def read_checkpoint_metadata(path: str | Path) -> dict:
    """The checkpoint's ``mikata`` metadata, checked field by field (``CheckpointMetadataError`` names the field)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("mikata")
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({e})") from e
    if raw is None:
        raise ModelLoadError(f"{path}: a safetensors file without mikata metadata; save it with "
                             "mikata.save_checkpoint or load the architecture with package.module:factory")
    return validate_checkpoint_metadata(path, raw, CHECKPOINT_FORMAT)


def load_checkpoint(path: str | Path, architecture: str | None = None) -> ModelHandle:
    """A mikata ``.safetensors`` checkpoint. Its metadata is data: the architecture it names must be
    in the closed set; a ``package.module:factory`` one is built only when ``architecture`` (typed by
    the caller) names it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    meta = read_checkpoint_metadata(path)
    arch = meta["architecture"]
    if architecture is not None:
        net = build_architecture(str(architecture), allow_code=True, input_size=tuple(meta["input_size"])).net
    elif is_code_spec(arch) and not (arch in VARIANTS or arch.startswith(("torchvision:", "timm:"))):
        raise ModelLoadError(
            f"{path}: field 'architecture' names code to import and call ({arch!r}); mikata never runs code "
            f"named inside a file. If you wrote that factory, name it yourself: --arch {arch} "
            f"(Python: load_model(path, architecture={arch!r}))")
    else:
        net = build_architecture(arch, input_size=tuple(meta["input_size"])).net
    if meta.get("head"):
        replace_head(net, len(meta["class_names"]), str(meta["head"]))  # the Linear the trainer replaced
    state = load_file(str(path))
    check_weight_values(path, state, net)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelLoadError(f"{path}: weights do not fit architecture {architecture or arch}: {e}") from e
    keep = {k: v for k, v in meta.items() if k not in (
        "format", "class_names", "input_size", "mean", "std", "crop_fraction", "interpolation", "in_channels",
        "default_layer", "resize")}
    size = tuple(meta["input_size"])
    # The base model's default layer may have no spatial map at the size this model was trained for
    # (e.g. 1x1 at 32 px): choose it again at the checkpoint's own input size.
    layers, probe = trace_and_probe(net.eval(), meta["in_channels"], size)
    default = next((l.name for l in layers if l.is_default), meta["default_layer"])
    return ModelHandle(
        net=net, class_names=meta["class_names"], input_size=size, mean=tuple(meta["mean"]),
        std=tuple(meta["std"]), crop_fraction=meta["crop_fraction"], interpolation=meta["interpolation"],
        resize=meta["resize"],
        in_channels=meta["in_channels"], default_layer=default, spec=str(path), metadata=keep, probe=probe)
