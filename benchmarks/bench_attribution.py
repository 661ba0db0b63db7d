"""Attribution speed: each mikata method vs its compute floor and the fastest peer, in one process.

Floors are measured here, side by side: forward only; forward + backward to the target layer; forward +
backward to the input (no weight gradients). Peers: Captum, pytorch-grad-cam, zennit. Numbers on a shared
machine are noisy: read the ratios, which are measured back to back in this process.

    PYTHONPATH=src python benchmarks/bench_attribution.py --quick        # batch 1 and 4, fewer methods
    PYTHONPATH=src python benchmarks/bench_attribution.py                # batch 1 and 16, all methods
    PYTHONPATH=src python benchmarks/bench_attribution.py --models vit --quick --no-rss   # a ViT, attention methods

The ``vit`` model (timm vit_tiny_patch16_224, random weights) times the attention methods against their
floors: attention-rollout against one forward (the model's own, fused-attention forward: ours runs the
unfused one, which is what materializes the attention), gradient-rollout against one forward plus one
backward to the input (ours stops at the first block's attention).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
warnings.filterwarnings("ignore")


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up (a call slower than 5 s is timed once)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > 5:
        return first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def floors(handle, x, layer, repeats):
    from mikata.hooks import _first_tensor, attached, get_layer, preserved

    net, model = handle.net, handle.model

    def forward():
        with torch.no_grad():
            model(x)

    def to_layer():
        grab = {}

        def keep(mod, args, out):
            grab["a"] = _first_tensor(out).detach().requires_grad_(True)
            return grab["a"]

        with preserved(net), attached([(get_layer(net, layer), "forward", keep)]):
            for p in net.parameters():
                p.requires_grad_(False)
            y = model(x)
            torch.autograd.grad(y[:, 0].sum(), grab["a"])

    def to_input():
        with preserved(net):
            for p in net.parameters():
                p.requires_grad_(False)
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(model(xi)[:, 0].sum(), xi)

    return {"forward": timeit(forward, repeats), "layer": timeit(to_layer, repeats),
            "input": timeit(to_input, repeats)}


def peers(handle, x, layer_module, target, quick):
    """name -> (peer label, zero-arg callable) for the methods a peer has; failures are caught later."""
    from mikata.models.torchvision_ops import import_torchvision

    import_torchvision()  # pytorch-grad-cam imports torchvision, which does not import as is on this CPU build
    import captum.attr as ca
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = handle.model
    tl = target.tolist()
    pgc_targets = [ClassifierOutputTarget(t) for t in tl]

    layout = handle.layout(handle.default_layer)
    reshape = layout.to_nchw if layout.kind in ("tokens", "nhwc") else None  # grad-cam's reshape_transform

    def pgc_call(cls):
        cam = getattr(pgc, cls)(model=m, target_layers=[layer_module], reshape_transform=reshape)
        return lambda: cam(input_tensor=x, targets=pgc_targets)

    def zennit_lrp():
        from mikata.attribution.lrp import make_composite
        from zennit.attribution import Gradient

        onehot = torch.eye(handle.num_classes)[target]
        with Gradient(model=m, composite=make_composite(handle, "epsilon-plus-flat")) as attributor:
            attributor(x, onehot)

    black = (0 - torch.tensor(handle.mean).view(1, -1, 1, 1)) / torch.tensor(handle.std).view(1, -1, 1, 1)
    out = {
        "gradcam": [("captum", lambda: ca.LayerGradCam(m, layer_module).attribute(x, target=target)),
                    ("pytorch-grad-cam", pgc_call("GradCAM"))],
        "gradcam++": [("pytorch-grad-cam", pgc_call("GradCAMPlusPlus"))],
        "layercam": [("pytorch-grad-cam", pgc_call("LayerCAM"))],
        "xgradcam": [("pytorch-grad-cam", pgc_call("XGradCAM"))],
        "eigencam": [("pytorch-grad-cam", pgc_call("EigenCAM"))],
        "saliency": [("captum", lambda: ca.Saliency(m).attribute(x, target=target))],
        "grad-x-input": [("captum", lambda: ca.InputXGradient(m).attribute(x, target=target))],
        "guided-backprop": [("captum", lambda: ca.GuidedBackprop(m).attribute(x, target=target))],
        "deconv": [("captum", lambda: ca.Deconvolution(m).attribute(x, target=target))],
        "guided-gradcam": [("captum", lambda: ca.GuidedGradCam(m, layer_module).attribute(x, target=target))],
        "smoothgrad": [("captum", lambda: ca.NoiseTunnel(ca.Saliency(m)).attribute(
            x, nt_type="smoothgrad", nt_samples=16, stdevs=0.15 * float(x.max() - x.min()), target=target))],
        "integrated-gradients": [("captum", lambda: ca.IntegratedGradients(m).attribute(
            x, baselines=black.expand_as(x), target=target, n_steps=32))],
        "deeplift": [("captum", lambda: ca.DeepLift(m).attribute(x, baselines=black.expand_as(x), target=target))],
        "occlusion": [("captum", lambda: ca.Occlusion(m).attribute(
            x, sliding_window_shapes=(x.shape[1], 32, 32), strides=(x.shape[1], 16, 16), target=target))],
        "lrp": [("zennit", zennit_lrp)],
    }
    if not quick:
        out["scorecam"] = [("pytorch-grad-cam", pgc_call("ScoreCAM"))]
    return out


OPTIONS = {"smoothgrad": {"samples": 16}, "integrated-gradients": {"steps": 32},
           "occlusion": {"window": 32, "stride": 16}}


def floor_of(method, f, n_windows, channels):
    """The passes a method cannot avoid, from the measured floors."""
    if method in ("gradcam", "gradcam++", "layercam", "xgradcam"):
        return f["layer"], "fwd+bwd to layer"
    if method == "eigencam":
        return f["forward"], "forward"
    if method == "scorecam":
        return f["forward"] * channels, f"{channels} forwards"
    if method == "guided-gradcam":
        return f["input"], "fwd+bwd to input"
    if method == "smoothgrad":
        return 16 * f["input"], "16 x fwd+bwd to input"
    if method == "integrated-gradients":
        return 32 * f["input"], "32 x fwd+bwd to input"
    if method == "deeplift":
        return 2 * f["input"], "fwd+bwd to input, 2N"
    if method == "occlusion":
        return n_windows * f["forward"], f"{n_windows} forwards"
    if method == "attention-rollout":
        return f["forward"], "forward (fused attention)"
    return f["input"], "fwd+bwd to input"


def bench_model(name, handle, batch, quick, repeats, rows):
    from mikata.attribution import explain
    from mikata.attribution.occlusion import window_starts
    from mikata.hooks import get_layer

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, generator=gen)
    layer = handle.default_layer
    f = floors(handle, x, layer, repeats)
    with torch.no_grad():
        target = handle.model(x).argmax(1)
    n_windows = len(window_starts(224, 32, 16)) ** 2
    with torch.no_grad():
        from mikata.hooks import capture

        with capture(handle.net, [layer], layouts=handle.layouts_for([layer])) as rec:
            handle.model(x[:1])
        channels = rec.activations[layer].shape[1]  # (1, C, h, w) whatever the layer's layout
    methods = ["gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "saliency", "grad-x-input",
               "guided-backprop", "deconv", "guided-gradcam", "smoothgrad", "integrated-gradients", "deeplift",
               "occlusion", "lrp"]
    if quick:
        methods = ["gradcam", "gradcam++", "saliency", "guided-backprop", "guided-gradcam", "smoothgrad",
                   "integrated-gradients", "deeplift", "occlusion", "lrp"]
    elif batch == 1:
        methods.append("scorecam")
    if name == "vit":  # GELU network: no rectifier methods; the attention methods beside a CAM and a gradient
        methods = ["gradcam", "attention-rollout", "gradient-rollout", "saliency"]
    peer_calls = peers(handle, x, get_layer(handle.net, layer), target, quick)
    for method in methods:
        ours = timeit(lambda: explain(handle, x, [method], targets="top1", options={method: OPTIONS.get(method, {})}),
                      repeats)
        floor, floor_label = floor_of(method, f, n_windows, channels)
        best, best_label = None, "-"
        for label, call in peer_calls.get(method, []):
            try:
                t = timeit(call, repeats)
            except Exception as e:  # a peer that cannot run this model is reported, not fatal
                best_label = f"{label}: fails ({type(e).__name__})" if best is None else best_label
                continue
            if best is None or t < best:
                best, best_label = t, label
        rows.append((name, batch, method, ours, floor, floor_label, best, best_label))
        print(fmt_row(rows[-1]), flush=True)


def combined(name, handle, batch, repeats):
    """gradcam + guided-backprop + guided-gradcam + saliency + smoothgrad(16), top-3, ours vs Captum one by one."""
    import captum.attr as ca
    from mikata.attribution import explain
    from mikata.hooks import get_layer

    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    m, lm = handle.model, get_layer(handle.net, handle.default_layer)
    methods = ["gradcam", "guided-backprop", "guided-gradcam", "saliency", "smoothgrad"]
    ours = timeit(lambda: explain(handle, x, methods, targets="top3", options={"smoothgrad": {"samples": 16}}), repeats)

    def captum_all():
        with torch.no_grad():
            top = m(x).topk(3, dim=1).indices
        for k in range(3):
            t = top[:, k]
            ca.LayerGradCam(m, lm).attribute(x, target=t)
            ca.GuidedBackprop(m).attribute(x, target=t)
            ca.GuidedGradCam(m, lm).attribute(x, target=t)
            ca.Saliency(m).attribute(x, target=t)
            ca.NoiseTunnel(ca.Saliency(m)).attribute(x, nt_type="smoothgrad", nt_samples=16,
                                                     stdevs=0.15 * float(x.max() - x.min()), target=t)

    theirs = timeit(captum_all, repeats)
    return ours, theirs


def fmt_row(r):
    name, batch, method, ours, floor, floor_label, peer, peer_label = r
    peer_s = f"{peer * 1000:9.0f}" if peer is not None else "        -"
    ratio = f"{ours / peer:6.2f}" if peer else "     -"
    return (f"| {name:9} | {batch:2} | {method:21} | {ours * 1000:9.0f} | {floor * 1000:9.0f} | {ours / floor:5.2f} "
            f"| {floor_label:22} | {peer_s} | {ratio} | {peer_label} |")


def bench_attnlrp(batches, repeats):
    """AttnLRP against its floor, one forward + one backward to the input (no weight gradients, fused attention
    off as AttnLRP needs), on timm ViT-Tiny with random weights at 224 px; and without its conservation probe
    (one more forward + backward of the first image), so the check's share shows."""
    from torchvision_compat import import_torchvision_declaring_ops

    import_torchvision_declaring_ops()
    import timm

    from mikata.attribution import explain
    from mikata.attribution.attnlrp import attnlrp
    from mikata.hooks import preserved
    from mikata.models.attention import unfused
    from mikata.models.handle import ModelHandle

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000).eval()
    handle = ModelHandle(net, [str(i) for i in range(1000)], spec="timm:vit_tiny_patch16_224")
    print("| model | N | ours ms | floor ms (fwd+bwd to input, unfused) | ours/floor | without probe ms | /floor |")
    print("|---|---|---|---|---|---|---|")
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        ids = handle.model(x).argmax(1, keepdim=True).detach()

        def floor():
            with preserved(net), unfused(net), torch.enable_grad():
                for p in net.parameters():
                    p.requires_grad_(False)
                xin = x.detach().requires_grad_(True)
                torch.autograd.grad(handle.model(xin).gather(1, ids).sum(), xin)

        calls = {"ours": lambda: explain(handle, x, ["attnlrp"]), "bare": lambda: attnlrp(handle, x, ids, check=False),
                 "floor": floor}
        times: dict[str, list[float]] = {k: [] for k in calls}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(repeats):  # interleaved, so a change in the machine's load hits all three alike
            for k, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        ours, bare, f = (statistics.median(times[k]) for k in ("ours", "bare", "floor"))
        print(f"| vit_tiny | {batch} | {ours * 1000:.0f} | {f * 1000:.0f} | {ours / f:.2f} | {bare * 1000:.0f} "
              f"| {bare / f:.2f} |", flush=True)


def ig_rss_child():
    from mikata.attribution import explain
    from mikata.models import load_model

    handle = load_model("efficientnet-lite0")
    x = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    explain(handle, x, ["integrated-gradients"], options={"integrated-gradients": {"steps": 64}})
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1 and 4, fewer methods, fewer repeats")
    parser.add_argument("--models", default="resnet18,lite0")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,16; quick 1,4)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-rss", action="store_true", help="skip the IG peak-RSS child process")
    parser.add_argument("--ig-rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--attnlrp", action="store_true", help="only AttnLRP vs its floor on ViT-Tiny")
    args = parser.parse_args()
    if args.ig_rss_child:
        ig_rss_child()
        return
    if args.attnlrp:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", max(1, min(2, os.cpu_count() or 1)))))
        bench_attnlrp([int(b) for b in (args.batches or "1,4").split(",")], args.repeats or 3)
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from mikata.models import load_model

    batches = [int(b) for b in (args.batches or ("1,4" if args.quick else "1,16")).split(",")]
    repeats = args.repeats or (2 if args.quick else 3)
    handles = {}
    for name in args.models.split(","):
        if name == "resnet18":
            from torchvision_compat import import_torchvision_declaring_ops

            import_torchvision_declaring_ops()
            torch.manual_seed(0)
            handles[name] = load_model("torchvision:resnet18", pretrained=False)
        elif name == "vit":
            from torchvision_compat import import_torchvision_declaring_ops

            import_torchvision_declaring_ops()
            handles[name] = load_model("timm:vit_tiny_patch16_224?weights=random")
        else:
            handles[name] = load_model("efficientnet-lite0")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print("| model | N | method | ours ms | floor ms | ours/floor | floor is | fastest peer ms | ours/peer | peer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, handle in handles.items():
        for batch in batches:
            bench_model(name, handle, batch, args.quick, repeats, rows)
    print()
    print("| model | N | combined figure (5 methods x top-3) | ours ms | Captum one by one ms | ours/Captum |")
    print("|---|---|---|---|---|---|")
    for name, handle in handles.items():
        for batch in batches:
            if name == "vit":  # the combined figure uses guided methods, which a GELU network refuses
                continue
            ours, theirs = combined(name, handle, batch, repeats)
            print(f"| {name} | {batch} | gradcam+guided-backprop+guided-gradcam+saliency+smoothgrad(16) "
                  f"| {ours * 1000:.0f} | {theirs * 1000:.0f} | {ours / theirs:.2f} |", flush=True)
    if not args.no_rss:
        out = subprocess.run([sys.executable, __file__, "--ig-rss-child"], capture_output=True, text=True)
        print(f"\nIG 64 steps, batch 16, lite0, 224 px: peak RSS {out.stdout.strip() or out.stderr[-300:]} GB")


if __name__ == "__main__":
    main()
