"""The rectifier override's cost: Guided Backprop through a ``TorchFunctionMode`` (now: every rectifier
call, functional ones included) vs per-module ReLU hooks (before: ``nn.ReLU`` modules only), and vs a
plain gradient, on torchvision resnet18 (random weights), in one process. Read the ratios.

    PYTHONPATH=src python benchmarks/bench_rectifier_override.py [--batch 4] [--size 224] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
warnings.filterwarnings("ignore")


class _HookedReLU(torch.autograd.Function):
    """The previous implementation's node: saves the pre-activation, guided rule in backward."""

    @staticmethod
    def forward(ctx, x, upper):
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(0.0, upper)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp_min(0.0) * ((x > 0) & (x < ctx.upper)), None


def module_hooks(net: nn.Module) -> list:
    """The previous mechanism: forward-pre + forward hooks on every nn.ReLU / nn.ReLU6 (clone for in-place)."""
    stash: dict[int, list] = {}
    hooks = []
    for m in net.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            upper = 6.0 if isinstance(m, nn.ReLU6) else float("inf")

            def pre(mod, args):
                stash.setdefault(id(mod), []).append(args[0])
                return (args[0].clone(),) if getattr(mod, "inplace", False) else None

            def post(mod, args, out, upper=upper):
                return _HookedReLU.apply(stash[id(mod)].pop(), upper)

            hooks += [(m, "forward_pre", pre), (m, "forward", post)]
    return hooks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from torchvision_compat import import_torchvision_declaring_ops as import_torchvision

    import_torchvision()
    from mikata.attribution.relu_rules import RuleState, rule_mode
    from mikata.hooks import attached
    from mikata.models import load_model

    torch.manual_seed(0)
    h = load_model("torchvision:resnet18", pretrained=False)
    for p in h.net.parameters():
        p.requires_grad_(False)
    x = torch.randn(args.batch, 3, args.size, args.size)

    def grad(ctx_fn):
        xin = x.clone().requires_grad_(True)
        with ctx_fn() as state:
            y = h.model(xin)
        if state is not None:
            state.mode = "guided"
        torch.autograd.grad(y[:, 0].sum(), xin)

    class Plain:
        def __enter__(self):
            return None

        def __exit__(self, *a):
            return False

    class Hooks:
        def __enter__(self):
            self.ctx = attached(module_hooks(h.net))
            self.ctx.__enter__()
            return None

        def __exit__(self, *a):
            return self.ctx.__exit__(*a)

    class Mode:
        def __enter__(self):
            self.state = RuleState()
            self.mode = rule_mode(self.state)
            self.mode.__enter__()
            return self.state

        def __exit__(self, *a):
            return self.mode.__exit__(*a)

    runs = {"plain gradient": Plain, "module hooks (before)": Hooks, "TorchFunctionMode (now)": Mode}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k, c in runs.items():
        grad(c)  # warm-up
    for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
        for k, c in runs.items():
            t = time.perf_counter()
            grad(c)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"resnet18, batch {args.batch}, {args.size} px, median of {args.repeats}")
    for k, v in med.items():
        print(f"| {k} | {1000 * v:.0f} ms | {v / med['plain gradient']:.2f}x plain |")
    print(f"now / before: {med['TorchFunctionMode (now)'] / med['module hooks (before)']:.2f}")


if __name__ == "__main__":
    main()
