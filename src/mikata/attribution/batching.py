"""Chunking perturbation work (samples, steps, masks, windows) under a memory budget, with progress."""

from __future__ import annotations

from typing import Iterator

import torch

DEFAULT_BUDGET_MB = 1024
# On a CPU, chunks much larger than this are slower, not faster: each fresh multi-hundred-MB
# allocation is page-faulted in again (glibc hands big blocks back to the kernel on free; the
# system time shows it). Measured on EfficientNet-Lite0 at 224 px, 4 images, 2 cores, budget
# 1024 -> 64 MB: occlusion 40.8 -> 9.9 s, SmoothGrad (32 samples) 9.0 -> 4.4 s, Integrated
# Gradients 7.3 -> 3.8 s (benchmarks/bench_attribution.py has the peers).
CPU_BUDGET_MB = 64  # the same rule as mikata.devices.CPU_BUDGET_MB, which sizes every device
# Activations kept for backward are roughly this many times the input's size for ImageNet CNNs
# (resnet18 at 224 px keeps ~25 MB per image); a conservative constant beats a probing pass.
_ACTIVATION_FACTOR = 60


def chunk_size(x: torch.Tensor, budget_mb: float = DEFAULT_BUDGET_MB, with_grad: bool = True, cap: int = 64) -> int:
    """How many single-image copies of ``x[0]`` fit one forward(+backward) under ``budget_mb``
    (at most ``CPU_BUDGET_MB`` on a CPU, where larger chunks only add page faults).

    On a GPU the default budget becomes a share of the free device memory (a smaller explicit
    ``budget_mb`` still caps it), and the cap on images per chunk grows 4x: a GPU only fills up with
    big batches. A chunk that still does not fit is halved by ``mikata.devices.for_chunks``.
    """
    if x.device.type == "cpu":
        budget_mb = min(budget_mb, CPU_BUDGET_MB)
    else:
        from mikata.devices import memory_budget_mb

        device_mb = memory_budget_mb(x.device)
        budget_mb = device_mb if budget_mb == DEFAULT_BUDGET_MB else min(budget_mb, device_mb)
        cap *= 4
    per_image = x[0].numel() * x.element_size() * (_ACTIVATION_FACTOR if with_grad else _ACTIVATION_FACTOR // 4)
    return int(max(1, min(cap, budget_mb * 2**20 // max(per_image, 1))))


def chunks(total: int, size: int, progress: bool = False, desc: str = "") -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``range(total)``; a progress bar (``mikata.progress``) when
    ``progress`` and >2 chunks."""
    ranges = [(s, min(s + size, total)) for s in range(0, total, size)]
    if progress and len(ranges) > 2:
        from mikata.progress import progress as bar

        yield from bar(ranges, desc=desc, unit="batch")
    else:
        yield from ranges
