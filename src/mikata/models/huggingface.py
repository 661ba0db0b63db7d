"""Hugging Face image classifiers from a local folder: ``hf:PATH`` (or any folder with a ``config.json``).

The folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``,
``preprocessor_config.json``). Loading never reaches the network (``local_files_only``) and never runs
code from the folder: ``trust_remote_code`` is always False (a ``config.json`` whose ``auto_map``
names its own modeling code is refused by ``transformers``), and weights load from safetensors only
unless the caller passes ``trust`` (a ``pytorch_model.bin`` is a pickle). The image processor gives
the input size, mean, std and resampling; ``id2label`` gives the class names. ``transformers`` is an
optional extra: ``pip install mikata[hf]``.
"""

from __future__ import annotations

from pathlib import Path

from mikata.errors import ModelLoadError

# PIL resampling codes in preprocessor_config.json -> mikata's interpolation names (LANCZOS/BOX/HAMMING: bicubic,
# the closest that mikata's preprocessing offers)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic", 4: "bilinear", 5: "bicubic"}


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_hf(path: Path, trust: bool = False) -> tuple[object, dict, list[str]]:
    """``(network, preprocessing fields, class names)`` from a local Hugging Face folder."""
    from mikata.models.torchvision_ops import torchvision_ready

    torchvision_ready()  # transformers' vision classes import torchvision
    try:
        import transformers
    except ImportError as e:
        raise ModelLoadError(f"{path} is a Hugging Face model folder; loading it needs the optional "
                             "`transformers` package: pip install 'mikata[hf]' (or transformers)") from e
    if not is_hf_folder(path):
        raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json); pass the folder that "
                             "save_pretrained wrote")
    has_safetensors = any(path.glob("*.safetensors"))
    if not has_safetensors and not trust:
        raise ModelLoadError(f"{path}: no .safetensors weights; a pytorch_model.bin is a pickle that can run code "
                             "when loaded. Re-save with save_pretrained(safe_serialization=True), or pass --trust "
                             "if you made this folder yourself")
    try:
        net = transformers.AutoModelForImageClassification.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, use_safetensors=has_safetensors)
    except Exception as e:  # unknown model type, remote code asked for, weights that do not fit, ...
        raise ModelLoadError(f"{path}: transformers could not load this folder as an image classifier "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); check config.json "
                             "(its model_type must be a transformers image classifier; custom code is never run)") from e
    pixels = _processor_fields(transformers, path)
    id2label = getattr(net.config, "id2label", None) or {}
    k = int(getattr(net.config, "num_labels", len(id2label)) or len(id2label))
    names = [str(id2label.get(i, id2label.get(str(i), f"class_{i}"))) for i in range(k)]
    return net, pixels, names


def _processor_fields(transformers, path: Path) -> dict:
    """Input size, mean, std, resampling and crop from the folder's image processor (defaults: 224 px,
    ImageNet statistics) as ``ModelHandle`` keyword arguments."""
    out: dict = {}
    if not (path / "preprocessor_config.json").is_file():
        return out
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(str(path), local_files_only=True,
                                                               trust_remote_code=False)
    except Exception as e:
        raise ModelLoadError(f"{path}/preprocessor_config.json: transformers could not read it ({e})") from e
    size = getattr(proc, "size", None) or {}
    crop = getattr(proc, "crop_size", None) or {}
    size = dict(size) if not isinstance(size, int) else {"shortest_edge": size}
    crop = dict(crop) if crop and not isinstance(crop, int) else ({"height": crop, "width": crop} if crop else {})
    if getattr(proc, "do_center_crop", False) and crop.get("height"):
        out["input_size"] = (int(crop["height"]), int(crop["width"]))
        edge = size.get("shortest_edge") or size.get("height")
        out["crop_fraction"] = min(1.0, int(crop["height"]) / int(edge)) if edge else 1.0
    elif size.get("height") and size.get("width"):
        out["input_size"] = (int(size["height"]), int(size["width"]))
        out["crop_fraction"] = 1.0
        out["resize"] = "stretch"  # ViTImageProcessor resizes each side to the size: no crop
    elif size.get("shortest_edge"):
        out["input_size"] = (int(size["shortest_edge"]),) * 2
        out["crop_fraction"] = 1.0
    if getattr(proc, "do_normalize", True):
        if getattr(proc, "image_mean", None) is not None:
            out["mean"] = tuple(float(v) for v in proc.image_mean)
            out["std"] = tuple(float(v) for v in proc.image_std)
    else:
        out["mean"], out["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = getattr(proc, "resample", None)
    out["interpolation"] = _RESAMPLE.get(int(resample), "bicubic") if resample is not None else "bilinear"
    return out
