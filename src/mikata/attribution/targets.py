"""Turning "top1", "top3", class ids or class names into one class id per image and rank.

Example:
    >>> specs, ids = resolve_targets(handle, logits, "top3")       # doctest: +SKIP
    >>> specs, ids.shape                                            # doctest: +SKIP
    (['top1', 'top2', 'top3'], torch.Size([N, 3]))
"""

from __future__ import annotations

import re
from typing import Sequence, Union

import torch

from mikata.models.handle import ModelHandle

TargetSpec = Union[str, int, Sequence[Union[str, int]], torch.Tensor]


def parse_topk(spec: object) -> int | None:
    """``"top3"`` -> 3; anything else -> None."""
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*top-?(\d+)\s*", spec.lower())
        if m:
            return max(1, int(m.group(1)))
    return None


def resolve_targets(handle: ModelHandle, logits: torch.Tensor, targets: TargetSpec) -> tuple[list[str], torch.Tensor]:
    """Labels for each target rank and class ids ``(N, T)`` from one forward's ``logits`` ``(N, K)``.

    ``targets``: "topk" (resolved per image), a class id or name (same for every image), a list of
    those, or a list with one entry per image when its length equals N and every entry is one class.
    Unknown names raise ``ChoiceError`` listing the classes.
    """
    n, k = logits.shape
    if isinstance(targets, torch.Tensor):  # explicit class ids per image: (N,) or (N, T)
        ids = targets.detach().long().to(logits.device).reshape(n, -1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
            raise ValueError(f"class ids must lie in 0..{k - 1}")
        return ["given"] if ids.shape[1] == 1 else [f"given{t + 1}" for t in range(ids.shape[1])], ids.clone()
    if targets is None:
        targets = "top1"
    top = parse_topk(targets)
    if top is not None:
        top = min(top, k)
        return [f"top{i + 1}" for i in range(top)], logits.topk(top, dim=1).indices  # (N, T)
    if isinstance(targets, (str, int)) or not isinstance(targets, Sequence):
        targets = [targets]
    ids = [_class_id(handle, k, t) for t in targets]
    labels = [str(t) for t in targets]
    return labels, torch.tensor(ids, dtype=torch.long, device=logits.device).expand(n, -1).clone()  # (N, T)


def _class_id(handle: ModelHandle | None, k: int, t: object) -> int:
    if handle is not None:
        return handle.class_index(t)  # raises ChoiceError
    from mikata.errors import ChoiceError

    if isinstance(t, int) and 0 <= t < k:
        return t
    raise ChoiceError("class id", t, [f"0..{k - 1}"])
