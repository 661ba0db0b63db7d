"""Reading class scores out of whatever a classifier's forward returns."""

from __future__ import annotations

import torch


def extract_logits(output: object) -> torch.Tensor:
    """The class-score tensor inside whatever a classifier's forward returned."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        return output.logits
    if isinstance(output, dict):
        for key in ("logits", "out", "output", "scores"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.dim() == 2:
                return item
    raise TypeError(f"cannot find class scores in a model output of type {type(output).__name__}; "
                    "return a (N, classes) tensor, a tuple/dict holding one, or an object with .logits")
