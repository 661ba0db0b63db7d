"""The model x method table of the zoo matrix: ok / refused, Pearson r against the reference, ms.

Models are tests/zoo_models.py's (random weights, small inputs). References as in
tests/test_attribution_zoo.py: plain autograd (saliency), pytorch-grad-cam (Grad-CAM, EigenCAM with its
own SVD sign), rectifiers patched in ``torch.nn.functional`` (Guided Backprop, Deconvnet, DeepLIFT),
Captum's DeepLift and GuidedBackprop (for the disagreements the issue saw), zennit (LRP).

    PYTHONPATH=src python benchmarks/zoo_table.py [--models googlenet,convnext]
    PYTHONPATH=src python benchmarks/zoo_table.py --lrp [resnet18,vit_tiny_patch16_224]   # LRP / AttnLRP
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
warnings.filterwarnings("ignore")

MODELS = ("googlenet", "squeezenet1_1", "densenet", "mobilenet_v3_large", "convnext", "resnet50", "inception_v3",
          "vgg16", "efficientnet_b0")


#: timm / torchvision architectures for the LRP table (random weights, batch norms randomized, seeded).
LRP_MODELS = ("tv:resnet18", "resnet18", "resnet50", "regnetx_002", "ghostnet_100", "hrnet_w18_small", "rexnet_100",
              "mobilevit_xxs", "efficientformer_l1", "vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224",
              "swin_tiny_patch4_window7_224")


def lrp_table(names: list[str]) -> None:
    """LRP and AttnLRP per architecture: the conservation figure (bias-free relevance at the pixels, plus what
    the softmax rules and constant tokens absorbed for AttnLRP: 1 when every operation has a rule) or the
    refusal, and the time of one 1-image call."""
    from test_attribution_zoo_cnn import _randomized, timm_handle
    from torchvision_compat import import_torchvision_declaring_ops

    from mikata.attribution import explain
    from mikata.errors import MikataError
    from mikata.models.handle import ModelHandle

    tv = import_torchvision_declaring_ops()
    print("| model | input | lrp | attnlrp |")
    print("|---|---|---|---|")
    for name in names:
        big = name.startswith(("vit", "deit", "swin", "efficientformer"))
        size = 224 if big else 64
        if name.startswith("tv:"):
            torch.manual_seed(0)
            net = _randomized(getattr(tv.models, name[3:])(num_classes=10))
            h = ModelHandle(net, [str(i) for i in range(10)], input_size=(size, size))
        else:
            h = timm_handle(name, size, **({"depth": 2} if name.startswith(("vit", "deit")) else {}))
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        cells = []
        for m in ("lrp", "attnlrp"):
            t = time.perf_counter()
            try:
                a = explain(h, x, [m])[0]
                cells.append(f"ok, conservation {a.info['conservation']:.4f}, {1000 * (time.perf_counter() - t):.0f} ms")
            except MikataError as e:
                figure = re.search(r"(?:sums to|and is) (-?[0-9.e+-]+|not a number)", str(e))
                why = f"conservation {figure.group(1)}" if figure else str(e).split(": ", 2)[1][:50]
                cells.append(f"refused ({type(e).__name__}: {why})")
        print(f"| {name} | {size} | {cells[0]} | {cells[1]} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--lrp", nargs="?", const=",".join(LRP_MODELS), default=None,
                    help="the LRP / AttnLRP conservation table instead (optionally: comma-separated architectures)")
    args = ap.parse_args()
    if args.lrp:
        lrp_table(args.lrp.split(","))
        return
    from attribution_helpers import pearson
    from test_attribution_zoo import _Guided, _Rescale, _eigencam_reference, _input_grad, _layer_act
    from mikata.attribution import explain
    from mikata.errors import MikataError
    from mikata.models import load_model

    def patched(fn, mode=None):
        hardtanh = F.hardtanh
        return mock.patch.multiple(
            F, relu=lambda x, inplace=False: fn.apply(x, 0.0, float("inf"), mode),
            relu6=lambda x, inplace=False: fn.apply(x, 0.0, 6.0, mode),
            hardtanh=lambda x, min_val=-1.0, max_val=1.0, inplace=False:
            fn.apply(x, 0.0, max_val, mode) if min_val == 0 else hardtanh(x, min_val, max_val))

    cols = ("saliency", "gradcam", "eigencam", "guided-backprop", "deconv", "guided-gradcam", "deeplift", "lrp")
    print("| model | layer | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in args.models.split(","):
        h = load_model(f"zoo_models:{name}")
        x = torch.randn(1, 3, *h.input_size, generator=torch.Generator().manual_seed(0))
        ids = torch.tensor(explain(h, x, ["saliency"])[0].targets)[:, None]
        refs = {}
        refs["saliency"] = lambda: _input_grad(h, x, ids).abs()
        for mode in ("guided", "deconv"):
            def ref(mode=mode):
                with patched(_Guided, mode):
                    return _input_grad(h, x, ids)
            refs["guided-backprop" if mode == "guided" else "deconv"] = ref

        def ref_dl():
            with patched(_Rescale):
                both = torch.cat([x, torch.zeros_like(x)]).requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(h.model(both)[:1].gather(1, ids).sum(), both)
            return x * g[:1]

        refs["deeplift"] = ref_dl
        refs["eigencam"] = lambda: _eigencam_reference(_layer_act(h, x, h.default_layer))
        cells = []
        for m in cols:
            opts = {"deeplift": {"baseline": "zero"}}
            t = time.perf_counter()
            try:
                a = explain(h, x, [m], options=opts)[0]
            except MikataError as e:
                cells.append(f"refused ({type(e).__name__})")
                continue
            ms = 1000 * (time.perf_counter() - t)
            extra = ""
            if m in refs:
                extra = f" r={pearson(a.raw, refs[m]()):.4f}"
            if m == "deeplift":
                from captum.attr import DeepLift

                try:
                    cap = DeepLift(h.model).attribute(x.clone(), baselines=torch.zeros_like(x), target=int(ids[0, 0]))
                    extra += f", Captum r={pearson(a.raw, cap):.2f}"
                except Exception as e:  # noqa: BLE001 - report what Captum does on this architecture
                    extra += f", Captum fails ({type(e).__name__})"
                extra += f", delta={a.info['completeness_delta'][0]:.1e}"
            if m == "guided-backprop":
                from captum.attr import GuidedBackprop

                cap = GuidedBackprop(h.model).attribute(x.clone(), target=int(ids[0, 0]))
                extra += f", Captum r={pearson(a.raw, cap):.2f}"
            if m == "gradcam":
                from pytorch_grad_cam import EigenCAM, GradCAM
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

                from mikata.hooks import get_layer

                for cls, key in ((GradCAM, "gradcam"), (EigenCAM, "eigencam")):
                    c = cls(model=h.model, target_layers=[get_layer(h.net, h.default_layer)])
                    r = torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(int(ids[0, 0]))]))
                    c.activations_and_grads.release()
                    if key == "gradcam":
                        g = a.maps - a.maps.amin()
                        extra += f" r={pearson(g / (g.amax() + 1e-7), r):.4f} (pytorch-grad-cam)"
                    else:
                        e = explain(h, x, ["eigencam"])[0].maps
                        e = e - e.amin()
                        refs["_eig_pgc"] = pearson(e / (e.amax() + 1e-7), r)
            if m == "eigencam" and "_eig_pgc" in refs:
                extra += f", pytorch-grad-cam r={refs['_eig_pgc']:.2f}"
            cells.append(f"ok {ms:.0f} ms{extra}")
        for p in h.net.parameters():
            p.grad = None
        print(f"| {name} | {h.default_layer} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
