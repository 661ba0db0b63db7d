"""Scorecard speed: ``mikata evaluate``'s defaults on 6 images at 160 px on EfficientNet-Lite0, against its floor.

**Ours**: one ``evaluate`` call with the CLI's defaults (``cli.evaluate.DEFAULT_METHODS``: gradcam, saliency,
guided-backprop, integrated-gradients with its default 32 steps and mean-colour baseline;
``DEFAULT_CHECKS`` less localization, which needs boxes or masks: faithfulness with 50 steps and the blur
fill, the randomization cascade with 8 stages, random-logit, max-sensitivity with 8 noisy copies),
on 6 photos (scikit-image / scikit-learn samples) preprocessed at 160 px, with the real ImageNet weights.
Wall time, CPU time (``time.process_time``: every thread of this process) and per-check / per-(check,
method) seconds (read from the saved parts) are printed.

**Floor**: the model passes those checks cannot do without, timed as plain batched loops in the same
process and multiplied by how many each check needs:

- a *map set* (every method's map of the N images, methods sharing what they can): one forward with
  two backwards (plain and guided) of the N images for the three gradient methods, plus Integrated
  Gradients' ``ig_steps x N`` forward+backward passes and its ``2N`` forwards (f(x), f(x0));
- the original maps are one map set, the cascade ``stages`` map sets (the randomized weights cost what
  the trained ones do), random-logit one, max-sensitivity ``samples``;
- faithfulness: ``(methods + 1) x 2 x steps x N`` inference forwards (deletion and insertion, every method
  and the random order; the first / last points of each curve are the intact image, known already).

Each kind of pass is timed on batches of the images themselves: forward+input-gradient at the batch
size Integrated Gradients runs (``chunk_size``), inference forwards at the curves' batch size, both
with contiguous and channels-last memory, the faster kept. Not in the floor (ours pays them): building
perturbed and noisy inputs, re-drawing weights, ranks, Spearman and SSIM, saving parts.

    PYTHONPATH=src python benchmarks/bench_scorecard.py                       # 6 images, 160 px, 2 threads
    PYTHONPATH=src python benchmarks/bench_scorecard.py --json /tmp/card.json # + every value, for --compare
    PYTHONPATH=src python benchmarks/bench_scorecard.py --demo RUN_DIR --json /tmp/demo.json
        # the demo's step-7 scorecard (its 8 images, methods and settings) on a `mikata demo` run folder
    PYTHONPATH=src python benchmarks/bench_scorecard.py --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch


def photos(handle, n: int) -> torch.Tensor:
    """``n`` real photos (skimage + sklearn samples, mirrored copies after the originals) preprocessed."""
    import sklearn.datasets
    from PIL import Image, ImageOps
    from skimage import data

    sk = Path(sklearn.datasets.__file__).parent / "images"
    imgs = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee()), Image.fromarray(data.astronaut()),
            Image.fromarray(data.rocket()), Image.open(sk / "china.jpg").convert("RGB"),
            Image.open(sk / "flower.jpg").convert("RGB")]
    imgs += [ImageOps.mirror(im) for im in imgs]
    return handle.preprocess(imgs[:n])


# ------------------------------------------------------------------------------------------- the floor
CLOCK = time.perf_counter  # main() sets time.process_time with --cpu-floor


def _best(fn, reps: int = 3) -> float:
    fn()  # warm-up: the first pass of a shape is slow
    return min(_timed(fn) for _ in range(reps))


def _timed(fn) -> float:
    t = CLOCK()
    fn()
    return CLOCK() - t


def pass_costs(handle, x: torch.Tensor, reps: int = 3) -> dict[str, float]:
    """Seconds per image of: an inference forward (``fwd``), a forward + backward to the input (``fb``),
    and one more backward through the same graph (``bwd``), each the faster of contiguous / channels-last."""
    from mikata.attribution.batching import chunk_size
    from mikata.evaluation.faithfulness import channels_last

    model = handle.model
    for p in handle.net.parameters():
        p.requires_grad_(False)
    n = x.shape[0]
    fb_batch = max(n, (chunk_size(x, with_grad=True) // n) * n)  # what IG runs per chunk
    fwd_batch = chunk_size(x, with_grad=False, cap=64)  # what the curves run per chunk
    xb = x[torch.arange(fb_batch) % n]
    xf = x[torch.arange(fwd_batch) % n]
    ids = model(x[:2]).argmax(1)[:1].expand(fb_batch)
    out = {}
    for cl in (False, True):
        fmt = torch.channels_last if cl else torch.contiguous_format
        with channels_last(model, enable=cl):
            bf, bb = xf.contiguous(memory_format=fmt), xb.contiguous(memory_format=fmt)

            def fwd():
                with torch.inference_mode():
                    model(bf)

            def fb(backwards: int = 1):
                def go():
                    xin = bb.detach().requires_grad_(True)
                    picked = model(xin).gather(1, ids.view(-1, 1)).sum()
                    for k in range(backwards):
                        torch.autograd.grad(picked, xin, retain_graph=k < backwards - 1)
                return go

            f, one, two = _best(fwd, reps) / fwd_batch, _best(fb(1), reps) / fb_batch, _best(fb(2), reps) / fb_batch
            got = {"fwd": f, "fb": one, "bwd": max(0.0, two - one)}
        for k, v in got.items():
            out[k] = min(out.get(k, math.inf), v)
    out["fb_batch"], out["fwd_batch"] = fb_batch, fwd_batch
    return out


def floor_seconds(costs: dict[str, float], n: int, methods: list[str], checks: list[str], steps: int, stages: int,
                  samples: int, ig_steps: int) -> dict[str, float]:
    """The floor of each part (see the module doc) from the per-image pass costs."""
    grad_methods = [m for m in methods if m != "integrated-gradients"]
    guided = any(m in ("guided-backprop", "guided-gradcam") for m in methods)
    one_set = 0.0
    if grad_methods:
        one_set += n * (costs["fb"] + (costs["bwd"] if guided else 0.0))
    if "integrated-gradients" in methods:
        one_set += n * (ig_steps * costs["fb"] + 2 * costs["fwd"])
    sets = {"randomization": stages, "random-logit": 1, "stability": samples}
    out = {"maps": one_set}
    for c in checks:
        if c == "faithfulness":
            out[c] = (len(methods) + 1) * 2 * steps * n * costs["fwd"]
        elif c in sets:
            out[c] = sets[c] * one_set
    return out


# ------------------------------------------------------------------------------------------- ours
def part_seconds(folder: str) -> dict[str, float]:
    """``{"check method": seconds}`` of every part saved in ``folder``."""
    out = {}
    for p in sorted(Path(folder).glob("*.pt")):
        check, _, rest = p.name.partition(".")
        method = rest.rsplit(".", 2)[0]
        data = torch.load(p, map_location="cpu", weights_only=True)
        out[f"{check} {method}"] = float(data.get("seconds", 0.0))
    return out


def part_values(folder: str) -> dict[str, dict[str, list[float]]]:
    """Per-image values behind the card's means, from the saved parts: ``{method: {metric: [per image]}}``."""
    from mikata.evaluation.faithfulness import auc

    out: dict[str, dict[str, list[float]]] = {}
    for p in sorted(Path(folder).glob("*.pt")):
        check, _, rest = p.name.partition(".")
        method = rest.rsplit(".", 2)[0]
        d = torch.load(p, map_location="cpu", weights_only=True)
        row = out.setdefault(method, {})
        if check == "faithfulness":
            row["deletion-auc"] = auc(d["deletion"]).tolist()
            row["insertion-auc"] = auc(d["insertion"]).tolist()
        elif check == "randomization":
            row["randomization-spearman"] = torch.as_tensor(d["spearman"]).double().mean(0).tolist()
            row["randomization-ssim"] = torch.as_tensor(d["ssim"]).double().mean(0).tolist()
        elif check == "random-logit":
            row["random-logit-spearman"] = torch.as_tensor(d["spearman"]).double().tolist()
            row["random-logit-ssim"] = torch.as_tensor(d["ssim"]).double().tolist()
        elif check == "stability":
            row["max-sensitivity"] = torch.as_tensor(d["max_sensitivity"]).double().tolist()
    return out


def run_evaluate(handle, x: torch.Tensor, methods: list[str], options: dict, **settings) -> tuple[dict, dict]:
    """One ``evaluate`` call timed as the CLI runs it (progress on: the cost estimate up front included):
    (timings, card + per-image values)."""
    from mikata.evaluation.scorecard import evaluate

    with tempfile.TemporaryDirectory(prefix="bench_scorecard_") as parts:
        wall, cpu = time.perf_counter(), time.process_time()
        res = evaluate(handle, x, methods, options=options, parts_dir=parts, progress=True, **settings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_part = part_seconds(parts)
        values = part_values(parts)
    return {"wall": wall, "cpu": cpu, "checks": res.card["seconds"], "parts": per_part}, {"card": res.card,
                                                                                        "per_image": values}


def print_timings(t: dict, floor: dict[str, float] | None = None, cpu_floor: bool = False) -> None:
    """Ours per check (wall seconds, from the card) beside the floor; the per-check ratio only when the floor
    is in wall seconds too (a CPU-second floor compares with ours' total CPU time, printed after)."""
    print(f"ours: {t['wall']:.1f} s wall, {t['cpu']:.1f} s CPU ({t['cpu'] / max(t['wall'], 1e-9):.2f} cores busy), "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    for c, s in t["checks"].items():
        line = f"  {c:<14} {s:8.1f} s wall"
        if floor and c in floor:
            line += f"   floor {floor[c]:7.1f} s {'CPU' if cpu_floor else 'wall'}"
            if not cpu_floor:
                line += f"   ratio {s / max(floor[c], 1e-9):5.2f}"
        print(line)
    for k, s in t["parts"].items():
        print(f"    part {k:<40} {s:8.1f} s")


def print_card(card: dict) -> None:
    from mikata.evaluation.scorecard import format_scorecard

    print(format_scorecard(card))
    if card.get("cascade"):
        c = card["cascade"]
        print("cascade per stage (Spearman | SSIM):", ", ".join(c["stages"]))
        for m in c["spearman"]:
            print(f"  {m:<22} " + " ".join(f"{v:6.3f}" for v in c["spearman"][m]) + "  |  "
                  + " ".join(f"{v:6.3f}" for v in c["ssim"][m]))


# ------------------------------------------------------------------------------------------- compare
def compare(before: dict, after: dict) -> int:
    """Every table value before vs after, with the difference and the standard error over images of the
    before values (the noise a different float order or draw could move it by is far below it)."""
    tb, ta = before["card"]["table"], after["card"]["table"]
    worst = 0.0
    print(f"{'method':<24} {'metric':<24} {'before':>9} {'after':>9} {'diff':>9} {'s.e.':>7}  |diff|/s.e.")
    for m in tb:
        for k, v in tb[m].items():
            w = ta.get(m, {}).get(k)
            per = before.get("per_image", {}).get(m, {}).get(k, [])
            per = [p for p in per if p == p]
            se = float(torch.tensor(per).std() / math.sqrt(len(per))) if len(per) > 1 else float("nan")
            if v is None or w is None:
                print(f"{m:<24} {k:<24} {v!s:>9} {w!s:>9}")
                continue
            d = w - v
            r = abs(d) / se if se > 0 else float("nan")
            worst = max(worst, r) if r == r else worst
            print(f"{m:<24} {k:<24} {v:9.4f} {w:9.4f} {d:+9.4f} {se:7.4f}  {r:5.2f}")
    for key in ("baseline",):
        if before["card"].get(key):
            for k, v in before["card"][key].items():
                w = after["card"].get(key, {}).get(k)
                print(f"{'random':<24} {k:<24} {v:9.4f} {w:9.4f} {w - v:+9.4f}")
    pb, pa = before["card"]["passes"], after["card"]["passes"]
    flips = [(m, c) for m in pb for c in pb[m] if pa.get(m, {}).get(c) != pb[m][c]]
    print(f"largest |diff| / s.e.: {worst:.2f}; pass/fail verdicts changed: {flips or 'none'}")
    return 0


# ------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ig-steps", type=int, default=None, help="IG steps (default the method's)")
    ap.add_argument("--steps", type=int, default=50, help="deletion/insertion steps (default 50, the CLI's)")
    ap.add_argument("--stages", type=int, default=8, help="cascade stages (default 8, the CLI's)")
    ap.add_argument("--samples", type=int, default=8, help="max-sensitivity noisy copies (default 8, the CLI's)")
    ap.add_argument("--no-floor", action="store_true", help="skip timing the floor")
    ap.add_argument("--cpu-floor", action="store_true",
                    help="time the floor's passes in CPU seconds (process_time), to compare with ours' CPU time on a "
                         "loaded machine (use with --threads 1)")
    ap.add_argument("--demo", metavar="RUN_DIR", default=None,
                    help="the demo's step-7 scorecard on this `mikata demo` run folder (its 8 images and settings)")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the timings, the card and per-image values")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two --json files")
    args = ap.parse_args()
    if args.compare:
        return compare(*(json.loads(Path(p).read_text()) for p in args.compare))
    torch.set_num_threads(args.threads)
    global CLOCK
    if args.cpu_floor:
        CLOCK = time.process_time
    from mikata.cli.evaluate import DEFAULT_CHECKS, DEFAULT_METHODS

    if args.demo:
        from mikata.evaluation.scorecard import load_images, sample_run

        handle, paths, _ = sample_run(args.demo, 8, 0)  # the demo's evaluate_run: sample_paths(run_dir, 8)
        x, _ = load_images(handle, paths)
        methods = ["gradcam", "saliency", "guided-backprop"]
        settings = dict(steps=50, stages=8, samples=8, fill="deletion=road,insertion=mean")
        options: dict = {}
        checks = [c for c in DEFAULT_CHECKS.split(",") if c != "localization"]
        print(f"demo scorecard: {args.demo}, {x.shape[0]} images at {tuple(x.shape[-2:])}, {handle.num_classes} "
              f"classes, {torch.get_num_threads()} threads")
    else:
        from mikata.models import load_model

        handle = load_model("efficientnet-lite0", input_size=args.size)
        x = photos(handle, args.images)
        methods = DEFAULT_METHODS.split(",")
        checks = [c for c in DEFAULT_CHECKS.split(",") if c != "localization"]
        settings = dict(steps=args.steps, fill="blur", stages=args.stages, samples=args.samples, radius=0.02, seed=0)
        # the CLI's options: IG takes the seed (and --ig-steps when given)
        options = {"integrated-gradients": {"seed": 0, **({"steps": args.ig_steps} if args.ig_steps else {})}}
        print(f"efficientnet-lite0 (real weights), {x.shape[0]} images at {tuple(x.shape[-2:])}, methods "
              f"{', '.join(methods)}, checks {', '.join(checks)}, {torch.get_num_threads()} threads")
    floor = None
    if not args.no_floor and not args.demo:
        from mikata.attribution.integrated_gradients import integrated_gradients
        import inspect

        ig_steps = args.ig_steps or inspect.signature(integrated_gradients).parameters["steps"].default
        costs = pass_costs(handle, x)
        floor = floor_seconds(costs, x.shape[0], methods, checks, settings["steps"], settings["stages"],
                              settings["samples"], ig_steps)
        print(f"pass costs per image: forward {costs['fwd'] * 1e3:.1f} ms (batch {costs['fwd_batch']}), "
              f"forward+backward {costs['fb'] * 1e3:.1f} ms (batch {costs['fb_batch']}), extra backward "
              f"{costs['bwd'] * 1e3:.1f} ms; floor {sum(floor.values()):.1f} s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in floor.items()))
    timings, values = run_evaluate(handle, x, methods, options, checks=checks, **settings)
    print_timings(timings, floor, args.cpu_floor)
    if floor:
        total = sum(floor.values())
        mine = timings["cpu" if args.cpu_floor else "wall"]
        clock = "CPU" if args.cpu_floor else "wall"
        print(f"total: ours {mine:.1f} s {clock} vs floor {total:.1f} s {clock} -> ratio {mine / total:.2f} "
              f"(goal: ours <= 300 s wall on a quiet 2-core machine)")
    print_card(values["card"])
    if args.json:
        Path(args.json).write_text(json.dumps({"timings": timings, "floor": floor, **values}, indent=1,
                                              default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
