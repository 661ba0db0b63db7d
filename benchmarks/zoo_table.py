"""The model x method table of the zoo matrix: ok / refused, Pearson r against the reference, ms.

Models are tests/zoo_models.py's (random weights, small inputs). References as in
tests/test_attribution_zoo.py: plain autograd (saliency), pytorch-grad-cam (Grad-CAM, EigenCAM with its
own SVD sign), rectifiers patched in ``torch.nn.functional`` (Guided Backprop, Deconvnet, DeepLIFT),
Captum's DeepLift and GuidedBackprop (for the disagreements the issue saw), zennit (LRP).

    PYTHONPATH=src python benchmarks/zoo_table.py [--models googlenet,convnext]
    PYTHONPATH=src python benchmarks/zoo_table.py --lrp [resnet18,vit_tiny_patch16_224]   # LRP / AttnLRP
    PYTHONPATH=src python benchmarks/zoo_table.py --transformers [--models vit,swin,hf]

With ``--transformers`` the models are tests/transformer_models.py's (ViT, registers, DeiT, Swin, MaxViT,
EVA, BEiT, a conv-stem hybrid; ``hf``: a Hugging Face ViTForImageClassification saved to a folder and
loaded with ``hf:``), and the references tests/test_transformers.py's: pytorch-grad-cam with its documented
reshape_transforms, attention rollout and gradient rollout written from the papers (timm ViT-style models
and the HF ViT, whose attention transformers returns itself).
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


TRANSFORMERS = ("vit", "vit_registers", "deit", "swin", "maxvit", "eva", "beit", "hybrid", "hf")


def transformer_table(names: list[str]) -> None:
    """One row per transformer: default layer, then per method ok/refused, r against the reference, ms."""
    import tempfile

    import transformer_models as tm
    from attribution_helpers import pearson
    from test_transformers import (_gradient_rollout_reference, _reshape, _rollout_reference, _vit_reference)
    from mikata.attribution import explain
    from mikata.errors import MikataError
    from mikata.models import load_model

    cols = ("gradcam", "attention-rollout", "gradient-rollout", "saliency")
    print("| model | default layer (map) | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in names:
        hf_out = None
        if name == "hf":
            folder = tempfile.mkdtemp()
            tm.hf_vit_folder(folder)
            h = load_model(f"hf:{folder}")
        else:
            h = getattr(tm, name)()
        x = torch.randn(1, 3, *h.input_size, generator=torch.Generator().manual_seed(0))
        target = int(h.model(x).argmax(1))
        attns = None
        if name in ("vit", "vit_registers", "deit", "hybrid"):
            with torch.enable_grad():
                logits, attns = _vit_reference(h.net, x)
        elif name == "hf":
            from transformers import ViTForImageClassification

            ref = ViTForImageClassification.from_pretrained(folder, attn_implementation="eager").eval()
            with torch.enable_grad():
                hf_out = ref(pixel_values=x, output_attentions=True)
            logits, attns = hf_out.logits, list(hf_out.attentions)
        prefix = h.layout(h.default_layer).prefix
        cells = []
        for m in cols:
            t = time.perf_counter()
            try:
                a = explain(h, x, [m], targets=[target])[0]
            except MikataError as e:
                cells.append(f"refused ({type(e).__name__})")
                continue
            ms = 1000 * (time.perf_counter() - t)
            extra = ""
            if m == "gradcam" and name != "hf":
                import pytorch_grad_cam
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

                from mikata.hooks import get_layer

                c = pytorch_grad_cam.GradCAM(model=h.model, target_layers=[get_layer(h.net, h.default_layer)],
                                             reshape_transform=_reshape(name, h, h.default_layer))
                r = torch.from_numpy(c(input_tensor=x, targets=[ClassifierOutputTarget(target)]))
                extra = f" r={pearson(a.maps, r):.4f} (pytorch-grad-cam)"
            elif m == "attention-rollout" and attns is not None:
                extra = f" r={pearson(a.raw.flatten(), _rollout_reference(attns, prefix).flatten()):.4f}"
            elif m == "gradient-rollout" and attns is not None:
                ref = _gradient_rollout_reference(attns, logits[:, target].sum(), prefix)
                extra = f" r={pearson(a.raw.flatten(), ref.flatten()):.4f}"
            elif m == "saliency":
                from test_attribution_zoo import _input_grad

                extra = f" r={pearson(a.raw, _input_grad(h, x, torch.tensor([[target]])).abs()):.4f}"
            cells.append(f"ok {ms:.0f} ms{extra}")
        grid = h.layout(h.default_layer).describe()
        print(f"| {name} | {h.default_layer} ({grid}) | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=None)
    ap.add_argument("--lrp", nargs="?", const=",".join(LRP_MODELS), default=None,
                    help="the LRP / AttnLRP conservation table instead (optionally: comma-separated architectures)")
    ap.add_argument("--transformers", action="store_true", help="the transformer zoo instead of the CNNs")
    args = ap.parse_args()
    if args.lrp:
        lrp_table(args.lrp.split(","))
        return
    if args.transformers:
        from torchvision_compat import import_torchvision_declaring_ops

        import_torchvision_declaring_ops()
        transformer_table((args.models or ",".join(TRANSFORMERS)).split(","))
        return
    args.models = args.models or ",".join(MODELS)
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
