"""Where mikata computes: one device choice, mixed precision for forward-only work, device-sized batches.

Everything device-specific lives here, so the algorithms stay device-agnostic: they create tensors on
their input's device and call the helpers below for the parts that differ (autocast, memory budget,
what to do when a chunk does not fit).

- ``resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")``: ``auto`` (or ``$MIKATA_DEVICE``) is
  CUDA when available, else Apple MPS, else the CPU; an unavailable device is one clear error.
- ``autocast(device, precision)``: bf16 autocast on CUDA devices that support it under ``auto``;
  fp32 on the CPU and for gradient work unless a reduced precision is asked for explicitly.
- ``memory_budget_mb(device)``: the CPU's 64 MB rule (see ``attribution/batching.py``); on CUDA a
  share of the free device memory (``torch.cuda.mem_get_info``).
- ``for_chunks`` / ``split_on_oom``: an out-of-memory error halves the chunk and retries.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> autocast_dtype(torch.device("cpu"), "auto") is None   # fp32 on a CPU
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Callable, Sequence, TypeVar

import torch

from mikata.errors import ChoiceError, MikataError

log = logging.getLogger(__name__)

DEVICE_ENV = "MIKATA_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The CPU rule of attribution/batching.py: bigger chunks are page-faulted in on every allocation.
CPU_BUDGET_MB = 64
# On a GPU, perturbation chunks may take this share of the memory free when the chunk is sized:
# the rest is left for the caching allocator's fragmentation, cuDNN workspaces and other processes.
CUDA_FREE_FRACTION = 0.5
# MPS has no cheap "free memory" query; a fixed budget that fits the smallest Apple GPUs.
MPS_BUDGET_MB = 1024

T = TypeVar("T")


class DeviceUnavailableError(MikataError):
    """The device asked for does not exist in this torch build or on this machine."""


def torch_build() -> str:
    """One phrase naming the installed torch build, e.g. ``torch 2.13.0+cpu (CPU-only build)``."""
    if torch.version.cuda:
        kind = f"CUDA {torch.version.cuda} build"
    elif getattr(torch.version, "hip", None):
        kind = f"ROCm {torch.version.hip} build"
    else:
        kind = "CPU-only build"
    return f"torch {torch.__version__} ({kind})"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The ``torch.device`` for a user's choice; ``None`` reads ``$MIKATA_DEVICE`` (default ``auto``).

    ``auto`` is CUDA when available, else MPS, else the CPU. Asking for a device that is not there
    raises ``DeviceUnavailableError`` naming the torch build and what to do instead.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if m:
        if not torch.cuda.is_available():
            why = "has no CUDA support" if not torch.version.cuda else "finds no usable CUDA GPU (driver?)"
            raise DeviceUnavailableError(
                f"device {spec!r} is not available: {torch_build()} {why}; use --device cpu, or install a "
                "CUDA build of torch (see the README, 'On a GPU machine')")
        index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceUnavailableError(f"device {spec!r} is not available: this machine has {count} CUDA "
                                         f"device(s), cuda:0..cuda:{count - 1}; pick one of them")
        return torch.device("cuda", index)
    if spec == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(
                f"device 'mps' is not available: {torch_build()} on this machine has no Apple MPS backend; "
                "use --device cpu (or cuda on a machine with an NVIDIA GPU)")
        return torch.device("mps")
    raise ChoiceError("device", spec, list(DEVICE_CHOICES), hint=f"or set ${DEVICE_ENV}")


def describe(device: torch.device) -> str:
    """A short line for the start of a command: which device, and which GPU."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{device.type}:{index} ({torch.cuda.get_device_name(index)}, {torch_build()})"
    return f"{device.type} ({torch_build()})"


# ------------------------------------------------------------------------------------------ precision
def check_precision(precision: str) -> str:
    p = (precision or "auto").strip().lower()
    if p not in PRECISIONS:
        raise ChoiceError("precision", precision, list(PRECISIONS))
    return p


def autocast_dtype(device: torch.device, precision: str = "auto", gradients: bool = False,
                   bf16_supported: Callable[[], bool] | None = None) -> torch.dtype | None:
    """The autocast dtype for work on ``device``, or ``None`` for plain fp32.

    ``auto``: bf16 on CUDA devices that support it (Ampere and newer), fp32 elsewhere, and fp32 for
    ``gradients`` work (attribution maps are differences of small gradients; bf16's 8 mantissa bits
    visibly change them). ``bf16`` / ``fp16`` are honoured on any device when asked explicitly.
    ``bf16_supported`` replaces ``torch.cuda.is_bf16_supported`` (tests).
    """
    p = check_precision(precision)
    if p == "fp32":
        return None
    if p == "auto":
        if gradients or device.type != "cuda":
            return None
        supported = bf16_supported or torch.cuda.is_bf16_supported
        return torch.bfloat16 if supported() else None
    return _DTYPES[p]


def autocast(device: torch.device, precision: str = "auto", gradients: bool = False):
    """A context manager running the enclosed forwards at the chosen precision (a no-op for fp32)."""
    dtype = autocast_dtype(device, precision, gradients)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------- memory
def memory_budget_mb(device: torch.device, fraction: float = CUDA_FREE_FRACTION,
                     mem_get_info: Callable[[torch.device], tuple[int, int]] | None = None) -> float:
    """How many MB one chunk of perturbation work may use on ``device``.

    CPU: the 64 MB rule. CUDA: ``fraction`` of the memory free right now (``torch.cuda.mem_get_info``,
    or the ``mem_get_info`` given, which tests use), so a chunk adapts to other tenants of the GPU.
    """
    if device.type == "cuda":
        free, _total = (mem_get_info or torch.cuda.mem_get_info)(device)
        return max(1.0, free * fraction / 2**20)
    if device.type == "mps":
        return float(MPS_BUDGET_MB)
    return float(CPU_BUDGET_MB)


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocator's out-of-memory errors (CUDA's own class, or MPS's RuntimeError text)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _release_cached(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
    elif device is not None and device.type == "mps":
        torch.mps.empty_cache()


def for_chunks(total: int, size: int, fn: Callable[[int, int], None], *, device: torch.device | None = None,
               progress: bool | None = False, desc: str = "") -> int:
    """Call ``fn(start, stop)`` over ``range(total)`` in chunks of ``size``; on out-of-memory, halve
    the chunk and retry the same range. Returns the chunk size that finally fit.

    ``fn`` must not change any state before it can run out of memory (accumulate at its end), so a
    retried range is counted once. A chunk of 1 that still does not fit re-raises the error.
    """
    done = 0
    bar = None
    if progress is not False and total > 2 * size:  # None: a bar where one shows (mikata.progress)
        from mikata.progress import Progress

        bar = Progress(total=total, desc=desc, unit="item", enabled=progress, first="first chunk")
    try:
        while done < total:
            stop = min(done + size, total)
            try:
                fn(done, stop)
            except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
                if not is_out_of_memory(e) or size <= 1:
                    raise
                size = max(1, size // 2)
                log.warning("%s: out of device memory; retrying with chunks of %d", desc or "chunk", size)
                _release_cached(device)
                continue
            if bar is not None:
                bar.update(stop - done)
            done = stop
    finally:
        if bar is not None:
            bar.close()
    return size


def split_on_oom(fn: Callable[[torch.Tensor], T], x: torch.Tensor, merge: Callable[[Sequence[T]], T],
                 device: torch.device | None = None, desc: str = "batch") -> T:
    """``fn(x)``; when it runs out of memory, run the two halves of the batch ``x`` and ``merge`` them.

    Recursive, so a batch shrinks until it fits; a single image that does not fit re-raises.
    """
    try:
        return fn(x)
    except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
        if not is_out_of_memory(e) or x.shape[0] <= 1:
            raise
    _release_cached(device)
    half = x.shape[0] // 2
    log.warning("%s of %d did not fit in device memory; running halves of %d", desc, x.shape[0], half)
    return merge([split_on_oom(fn, x[:half], merge, device, desc), split_on_oom(fn, x[half:], merge, device, desc)])



def module_device(net: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module with neither)."""
    for t in net.parameters():
        return t.device
    for t in net.buffers():
        return t.device
    return torch.device("cpu")
