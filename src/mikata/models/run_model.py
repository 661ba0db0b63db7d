"""Finding and loading the model a run was scanned with, treating the run directory as data.

A run's ``manifest.json`` records the model spec the scan used. A run directory can come from
anyone (a colleague's archive, a download), so what it records is never allowed to choose code:

- a spec the user typed (``--model``, ``model=``) is honoured as typed, code specs included;
- a recorded spec is honoured only if it is a closed-set name (built-in, ``torchvision:NAME``,
  ``timm:NAME``) or a ``.safetensors`` checkpoint (data only; its architecture is itself checked
  against the closed set). Pickles, TorchScript and ``package.module:factory`` specs recorded in a
  manifest are refused with the ``--model`` to type instead;
- a recorded checkpoint path is looked for as recorded (if absolute), relative to the run
  directory, and by its file name inside the run directory. Never in parent directories: a file
  planted higher up must not be picked up;
- the weights hash is compared with the manifest's before anything uses the model.

Example:
    >>> handle = load_run_model(identity, "runs/digits")                    # doctest: +SKIP
    >>> handle = load_run_model(identity, "runs/digits", model="pkg.mod:factory")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from mikata.errors import ModelLoadError
from mikata.models.checkpoint_meta import is_code_spec
from mikata.models.efficientnet_lite import VARIANTS
from mikata.models.handle import ModelHandle

FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".ts", ".pt2", ".jit")


class RunModelError(ModelLoadError):
    """The run's model cannot be found, is not allowed from a manifest, or is not the scanned one."""


def _closed_name(spec: str) -> bool:
    return spec in VARIANTS or spec.startswith(("torchvision:", "timm:"))


def run_model_spec(identity: dict, run_dir: str | os.PathLike | None = None, model: str | None = None) -> str:
    """The spec to load for a run: ``model`` if the user gave one, else the manifest's, resolved safely.

    A recorded checkpoint path that does not exist as recorded is looked up inside the run
    directory (relative path, then file name), so a run moved together with its checkpoint still
    finds it. When nothing is found the recorded spec is returned unchanged (loading it then fails
    with "does not exist").
    """
    if model:
        return str(model)
    spec = identity.get("model_spec")
    if not isinstance(spec, str) or not spec:
        raise RunModelError(f"the run's manifest has no usable model_spec ({spec!r}); pass --model SPEC")
    if _closed_name(spec) or not spec.endswith(FILE_SUFFIXES):
        return spec
    recorded = Path(spec).expanduser()
    if recorded.is_absolute() and recorded.is_file():
        return str(recorded)
    if run_dir is None:
        return spec
    run = Path(run_dir).expanduser().resolve()
    candidates = [run / Path(spec).name] if recorded.is_absolute() else [run / recorded, run / recorded.name]
    for candidate in candidates:
        if candidate.is_file() and run in candidate.resolve().parents:
            return str(candidate)
    return spec


def fold_models(manifest: dict) -> dict[str, tuple[str, str]]:
    """A cross-validation run's fold models, ``{"fold1": (checkpoint spec, weights sha1), ...}`` (rows
    record their fold as their split), or ``{}`` for any other run. Read from the manifest: data, not
    code; each spec still passes ``check_recorded_spec`` and the weights hash when it is loaded."""
    cv = manifest.get("crossval") if isinstance(manifest, dict) else None
    if not isinstance(cv, dict):
        return {}
    specs, hashes = cv.get("fold_models"), cv.get("fold_weights_sha1")
    if not (isinstance(specs, list) and isinstance(hashes, list) and 0 < len(specs) == len(hashes) <= 1000
            and all(isinstance(v, str) for v in specs + hashes)):
        raise RunModelError("the run's manifest says it is a cross-validation run but its fold models are not "
                            "a list of checkpoints with their weights hashes; pass --model SPEC")
    return {f"fold{i + 1}": (spec, sha1) for i, (spec, sha1) in enumerate(zip(specs, hashes))}  # crossval.fold_names


def check_recorded_spec(spec: str) -> None:
    """Refuse a spec read from a manifest that could run code: only closed names and ``.safetensors``."""
    if _closed_name(spec) or spec.endswith(".safetensors"):
        return
    if is_code_spec(spec):
        what = "names code to import and call"
    elif spec.endswith(FILE_SUFFIXES):
        what = "is a TorchScript or pickle file, which can run code when loaded"
    else:
        what = "is not a model spec mikata loads from a manifest"
    raise RunModelError(f"the run's manifest model_spec {spec!r} {what}; mikata does not load it on a run's word. "
                        f"If it is yours, pass it yourself: --model {spec} (Python: model=...)")


def weights_hash(net: nn.Module) -> str:
    """sha1 over the state dict (names, shapes, bytes): a run is tied to exactly these weights."""
    h = hashlib.sha1()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        t = t.detach().cpu()  # the same hash wherever the model runs
        h.update(t.contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def load_run_model(identity: dict, run_dir: str | os.PathLike | None = None, model: str | None = None,
                   trust: bool = False, device: str | torch.device | None = "cpu") -> ModelHandle:
    """Load the model a run was scanned with (``manifest["identity"]``) onto ``device``, refusing
    other weights.

    ``model`` (typed by the user) overrides the recorded spec and may be any spec ``load_model``
    takes; ``trust`` applies only to it. The recorded spec passes ``check_recorded_spec`` first.
    """
    from mikata.models.loading import load_model

    spec = run_model_spec(identity, run_dir, model)
    if model:
        handle = load_model(spec, trust=trust, device=device)
    else:
        check_recorded_spec(spec)
        handle = load_model(spec, device=device)
    expected = identity.get("weights_sha1")
    if weights_hash(handle.net) != expected:
        raise RunModelError(f"the model at {spec} is not the one this run was scanned with (its weights hash "
                            "differs); pass the scanned model with --model, or scan again into a new run directory")
    return handle
