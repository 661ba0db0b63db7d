"""Do class-logit images transfer? lite0 renders, independent models (EfficientNet-Lite1, -Lite2) judge.

An image that only the model it was made for recognises is partly an adversarial pattern. Here
the built-in EfficientNet-Lite0 renders one image per class for seeded-random ImageNet classes;
EfficientNet-Lite1 and -Lite2 (real weights, other networks) classify each image at their own input
size. Reported per renderer: top-1 / top-5 hit rate and the mean probability of the class, for lite0
itself and for both judges, and seconds per step per image. torch-lucent's ``render_vis`` renders
the same classes at the first config's step budget and size (Fourier + decorrelated colour, its standard transforms,
Adam lr 0.05, the same lite0 normalization) as the peer.

Run:  PYTHONPATH=src python benchmarks/bench_featurevis_quality.py --classes 10 \\
          --config default: --config long:steps=96 --config strong:jitter=16,scale=0.2,degrees=20
      (``--config NAME:key=value,...`` sets RenderOptions fields; ``--no-lucent`` skips the peer;
       ``--save DIR`` writes each renderer's grid). The machine is shared: timings are noisy;
       per-step costs are measured in the same process, one after the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def parse_config(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` -> (NAME, RenderOptions fields), values typed like the defaults."""
    from mikata.featurevis import RenderOptions

    name, _, rest = text.partition(":")
    defaults = RenderOptions()
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        current = getattr(defaults, key)
        if isinstance(current, bool):
            fields[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, int):
            fields[key] = int(value)
        elif isinstance(current, float):
            fields[key] = float(value)
        else:
            fields[key] = value
    return name or "default", fields


def judge(judges: dict, images: torch.Tensor, classes: list[int]) -> dict[str, dict[str, float]]:
    """Each judge's top-1 / top-5 rate and mean class probability for ``images`` ``(N, 3, H, W)`` in [0, 1]."""
    out = {}
    target = torch.tensor(classes)
    for name, handle in judges.items():
        x = F.interpolate(images.float(), size=handle.input_size, mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        with torch.no_grad():
            probs = handle.net(handle.preprocessing.normalize(x)).softmax(1)  # (N, 1000)
        top5 = probs.topk(5, dim=1).indices  # (N, 5)
        out[name] = {"top1": float((top5[:, 0] == target).float().mean()),
                     "top5": float((top5 == target[:, None]).any(1).float().mean()),
                     "prob": float(probs[torch.arange(len(classes)), target].mean())}
    return out


def render_lucent(handle, classes: list[int], steps: int, size: int) -> tuple[torch.Tensor, float]:
    """torch-lucent's render_vis: one batch, one image per class, at ``steps`` steps."""
    from lucent.optvis import objectives, param as lparam, render as lrender, transform as ltransform

    net = handle.net
    obj = sum(objectives.channel("fc", c, batch=i) for i, c in enumerate(classes))
    normalize = handle.preprocessing.normalize
    torch.manual_seed(0)
    t = time.perf_counter()
    imgs = lrender.render_vis(net, obj, param_f=lambda: lparam.image(size, batch=len(classes)),
                              transforms=list(ltransform.standard_transforms) + [normalize], thresholds=(steps,),
                              preprocess=False, show_image=False, progress=False)
    seconds = time.perf_counter() - t
    return torch.from_numpy(imgs[-1]).permute(0, 3, 1, 2).float(), seconds  # (N, 3, H, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=50, help="seeded-random ImageNet classes (default 50)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the class draw (default 0)")
    ap.add_argument("--config", action="append", default=None, help="NAME:key=value,... (repeatable)")
    ap.add_argument("--no-lucent", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", default=None, help="folder for each renderer's grid.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from mikata.featurevis import RenderOptions, visualize_classes
    from mikata.models import load_model

    lite0 = load_model("efficientnet-lite0")
    judges = {"lite0 (self)": lite0, "lite1": load_model("efficientnet-lite1"), "lite2": load_model("efficientnet-lite2")}
    classes = sorted(torch.randperm(1000, generator=torch.Generator().manual_seed(args.seed))[:args.classes].tolist())
    configs = [parse_config(c) for c in (args.config or ["default:"])]
    rows = []
    for name, fields in configs:
        opts = dataclasses.replace(RenderOptions(seed=0), **fields)
        t = time.perf_counter()
        res = visualize_classes(lite0, classes, opts)
        seconds = time.perf_counter() - t
        steps = opts.steps * opts.octaves
        rows.append((f"mikata {name}", steps, seconds / steps / len(classes), judge(judges, res.images, classes)))
        if args.save:
            res.save(os.path.join(args.save, name))
        print(f"  done: mikata {name} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    if not args.no_lucent:
        from torchvision_compat import import_torchvision_declaring_ops as import_torchvision

        import_torchvision()  # lucent imports torchvision
        first = dataclasses.replace(RenderOptions(), **configs[0][1])  # the same budget as the first config
        steps = first.steps * first.octaves
        for p in lite0.net.parameters():  # lucent leaves requires_grad as it finds it: the model's default
            p.requires_grad_(True)
        images, seconds = render_lucent(lite0, classes, steps, first.size)
        rows.append(("lucent render_vis", steps, seconds / steps / len(classes), judge(judges, images, classes)))
        if args.save:
            from mikata.featurevis.optimize import Rendering

            Rendering(images, [lite0.class_names[c] for c in classes]).save(os.path.join(args.save, "lucent"))
    lucent_cost = rows[-1][2] if not args.no_lucent else None
    print(f"\n{len(classes)} seeded-random ImageNet classes (seed {args.seed}), lite0 renders; "
          f"torch {torch.__version__}, {args.threads} threads\n")
    names = list(judges)
    head = "| renderer | steps | " + " | ".join(f"{n} top-1 / top-5 / p" for n in names) + " | s/step/image |"
    print(head + (" vs lucent |" if lucent_cost else ""))
    print("|---" * (3 + len(names) + (1 if lucent_cost else 0)) + "|")
    for label, steps, cost, scores in rows:
        cells = " | ".join(f"{s['top1']:.0%} / {s['top5']:.0%} / {s['prob']:.2f}" for s in scores.values())
        ratio = f" {cost / lucent_cost:.2f}x |" if lucent_cost else ""
        print(f"| {label} | {steps} | {cells} | {cost:.3f} |{ratio}")


if __name__ == "__main__":
    main()
