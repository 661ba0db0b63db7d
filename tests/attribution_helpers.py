"""Helpers shared by the attribution tests: model-state snapshots and hook checks."""

from __future__ import annotations

import torch
from torch import nn


def hook_counts(model: nn.Module) -> int:
    """How many hooks of any kind are registered on any module of ``model``."""
    total = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_state_dict_hooks"):
            total += len(getattr(m, attr, {}) or {})
    return total


def snapshot(model: nn.Module) -> dict:
    return {"training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "params": [p.detach().clone() for p in model.parameters()],
            "buffers": [b.detach().clone() for b in model.buffers()],
            "hooks": hook_counts(model)}


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["hooks"] == before["hooks"] == 0
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(torch.equal(a, b) for a, b in zip(after["params"], before["params"]))
    assert all(torch.equal(a, b) for a, b in zip(after["buffers"], before["buffers"]))
    assert all(p.grad is None for p in model.parameters())


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-30))
