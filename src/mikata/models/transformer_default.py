"""The default CAM layer of a transformer (token or channels-last maps).

Tokens (ViT, DeiT, EVA, BEiT, hybrids, Hugging Face ViT): after the last block only the class
token (or the pooled tokens) reaches the head, so the patch tokens at the last block's output carry
no gradient and a Grad-CAM there is zero. The last place where patch tokens still matter is the
input of the last block's attention: pytorch-grad-cam's ViT recipe uses ``blocks[-1].norm1`` for that
reason. The rule here finds that layer on any token model from one gradient probe: the last
normalization layer with a token layout whose patch tokens get a non-zero gradient from the logits
(``blocks.11.norm1`` on timm ViT/DeiT, ``vit.layers.11.layernorm_before`` on a Hugging Face
ViT). A model whose head averages the patch tokens (EVA and BEiT by default) still has live patch
tokens after its last block: there, as on a CNN, the last block's output (``blocks.11``).

Channels-last (Swin, whose last map is channels-last even though its blocks' MLPs see tokens): the
last stage, i.e. the last channels-last layer that is not a single ``LayerNorm``/``Linear`` (the
final norm only rescales each cell's channels).
"""

from __future__ import annotations

import torch
from torch import nn

from mikata.models.layout import _LAST_DIM, FeatureLayout


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def transformer_default(net: nn.Module, in_channels: int, input_size: tuple[int, int], finished: list[str],
                        layouts: dict[str, FeatureLayout], modules: dict[str, nn.Module]) -> str | None:
    """The default CAM layer for a model whose last map is tokens or channels-last (None: no better choice)."""
    order = [n for n in dict.fromkeys(reversed(finished))][::-1]
    maps = [n for n in order if layouts.get(n) and layouts[n].spatial]
    tokens = [n for n in maps if layouts[n].kind == "tokens"]
    if maps and layouts[maps[-1]].kind == "tokens":
        live = _patch_gradients(net, in_channels, input_size, tokens, layouts)
        alive = [n for n in tokens if live.get(n)]
        if live.get(tokens[-1]):  # the head reads every patch token (mean pooling): the last block's output
            blocks = [n for n in alive if isinstance(modules.get(n.rpartition(".")[0]), (nn.Sequential, nn.ModuleList))]
            return (blocks or alive)[-1]
        norms = [n for n in alive if _is_norm(modules[n])]
        return (norms or alive or [None])[-1]
    stages = [n for n in maps if layouts[n].kind == "nhwc" and not isinstance(modules[n], _LAST_DIM)]
    if not stages:
        return None
    best = stages[-1]
    if isinstance(modules[best], (nn.Sequential, nn.ModuleList)):  # the list of stages: its last stage
        inner = [n for n in stages if n.startswith(best + ".") and "." not in n[len(best) + 1:]]
        best = inner[-1] if inner else best
    return best


def _patch_gradients(net: nn.Module, in_channels: int, input_size: tuple[int, int], names: list[str],
                     layouts: dict[str, FeatureLayout]) -> dict[str, bool]:
    """For each token layer: does the sum of the logits depend on its patch tokens? One seeded forward
    and backward; parameters' ``requires_grad`` and the module modes are put back."""
    from mikata.devices import module_device
    from mikata.hooks import _first_tensor, attached, preserved
    from mikata.models.outputs import extract_logits

    grads: dict[str, torch.Tensor] = {}

    def make(name: str):
        def hook(mod, args, out):
            t = _first_tensor(out)
            if t is not None and t.requires_grad:
                t.register_hook(lambda g, name=name: grads.__setitem__(name, g.detach()))
        return hook

    modules = dict(net.named_modules())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_channels, *input_size, generator=gen).to(module_device(net)).requires_grad_(True)
    with preserved(net):
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            with torch.enable_grad(), attached([(modules[n], "forward", make(n)) for n in names]):
                extract_logits(net(x)).sum().backward()
        except Exception:  # a model that cannot take the probe keeps the shape rule's choice
            return {}
    out = {}
    for name, g in grads.items():
        layout = layouts[name]
        patches = layout.to_nchw(g) if g.dim() == 3 else g
        out[name] = bool(patches.abs().max() > 0)
    return out
