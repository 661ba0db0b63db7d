"""Training speed against its floors, in one process, at several input sizes.

    PYTHONPATH=src nice -n 10 python benchmarks/bench_train.py [--sizes 64 160 224] [--images 256]
        [--repeat 3] [--threads 1] [--freeze-until blocks.9] [--batch-size 32]

Model: the built-in efficientnet-lite0 (real ImageNet weights) with a fresh 10-class head; data: a
seeded Fashion-MNIST subset from /usr/share/datasets/fashion-mnist, written as PNGs and decoded by
mikata's own ``decode_split`` (so both sides see the same decoded, cached tensors). Per size:

* **cache**: mikata's frozen-feature pass over decoded tensors (``training.loop.cached_split``)
  against the floor, a plain ``torch.inference_mode()`` forward of the frozen layers only (``stem`` +
  ``blocks[:k]`` as an ``nn.Sequential``) over the same images at the same batch size.
* **decode + cache**: what ``mikata train`` runs before the first epoch: ``decode_split`` from the PNG
  files with the frozen layers' forward applied to each run of decoded images while the worker threads
  decode the next ones; ``seq s`` is decode, then the plain forward (context), and the ratio is the
  forward alone (the cache floor) / ours: >= 0.9 means decoding is hidden behind the forward.
* **epoch**: one training epoch of mikata (``training.loop._train_epoch`` fed with the cached features
  through ``started_at``, with ``faster_depthwise_grads``: the same code ``mikata train`` runs) against
  the floor, a plain PyTorch loop (shuffle, forward of the trainable layers, cross-entropy, backward,
  SGD step) over the same cached features with the same frozen layers, optimizer groups and batch size.
  The floor runs in both memory formats (contiguous, and channels-last with the features converted
  once) and the faster one counts; ours runs with its default (channels-last), and contiguous as
  context (the ``(NCHW)`` column), and without ``faster_depthwise_grads`` (``(oneDNN)``, its ratio
  in ``oneDNN ratio``: the gain of the tap-sum weight gradients).

Times are the best of ``--repeat`` interleaved runs (ours and floor alternate, so load changes hit
both), wall clock, or with ``--clock cpu`` this process's CPU seconds (steadier on a loaded machine;
meaningless for decode + cache, whose point is two threads at once); ratio = floor seconds / ours seconds = our throughput as a fraction of the floor's (goal >= 0.9).
On a shared machine only the ratios carry over; absolute times are context.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


CLOCK = time.perf_counter


def best_of(fns: dict, repeat: int) -> dict[str, float]:
    """Run each function once untimed (the first call of a shape builds its kernels), then ``repeat`` times,
    alternating between them; the fastest time of each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = CLOCK()
            fn()
            times[name].append(CLOCK() - t)
    return {k: min(v) for k, v in times.items()}


def make_optimizer(net: nn.Module, head: str, lr: float = 0.01, head_lr_factor: float = 10.0) -> torch.optim.Optimizer:
    """SGD with the head ``head_lr_factor`` times faster, as ``train`` builds it."""
    head_params = list(net.get_submodule(head).parameters())
    ids = {id(p) for p in head_params}
    body = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": head_params, "lr": lr * head_lr_factor}] + ([{"params": body, "lr": lr}] if body else [])
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def split_network(net: nn.Module, k: int) -> tuple[nn.Module, nn.Module]:
    """lite0 as (frozen prefix, trainable rest): ``stem + blocks[:k]`` and ``blocks[k:] + head + fc``."""
    frozen = nn.Sequential(net.stem, *net.blocks[:k])
    rest = nn.Sequential(*net.blocks[k:], net.head, net.pool, net.flatten, net.dropout, net.fc)
    return frozen, rest


def floor_cache(frozen: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    frozen.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(frozen(x[i:i + batch].float()))
    return torch.cat(out)


def floor_epoch(rest: nn.Module, optimizer: torch.optim.Optimizer, feats: torch.Tensor, y: torch.Tensor,
                batch: int, generator: torch.Generator) -> float:
    rest.train()
    order = torch.randperm(len(feats), generator=generator)
    total = torch.zeros(())
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        if len(idx) < 2:
            continue
        loss = F.cross_entropy(rest(feats[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
    return float(total) / len(order)


def run_size(size: int, data: Path, args) -> dict:
    from mikata.data.datasets import load_dataset
    from mikata.training.freeze import freeze_until
    from mikata.training.depthwise import faster_depthwise_grads
    from mikata.training.frozen_features import boundary_inputs, started_at
    from mikata.training.loop import _new_handle, _train_epoch, cached_split
    from mikata.training.options import TrainOptions
    from mikata.training.tensors import decode_split

    opts = TrainOptions(batch_size=args.batch_size, freeze_until=args.freeze_until, input_size=size, workers=2)
    ds = load_dataset(data)
    handle = _new_handle("efficientnet-lite0", ds.classes, opts, Path("bench.safetensors"))
    decoded = decode_split(ds, handle, workers=2, progress=False)  # (N, 3, S, S) float16
    k = int(args.freeze_until.split(".")[1])
    cache_batch = opts.batch_size * 2  # what ``train`` uses for the cache pass (``cached_split``)

    # --- cache: ours (hook capture) vs a plain inference_mode forward of the frozen prefix
    ref_net = copy.deepcopy(handle.net)
    frozen_floor, rest_floor = split_network(ref_net, k)
    freeze_until(handle.net, args.freeze_until)
    results: dict[str, torch.Tensor] = {}
    cache = best_of({
        "ours": lambda: results.__setitem__("ours", cached_split(handle, opts, decoded, torch.channels_last).x),
        "floor": lambda: results.__setitem__("floor", floor_cache(frozen_floor, decoded.x, cache_batch)),
    }, args.repeat)
    assert torch.allclose(results["ours"], results["floor"], atol=1e-4), "cache: ours and floor disagree"
    feats = results["floor"]

    # --- decode + cache from the files: ours overlaps them (decode_split's ``then``, as ``train`` runs it)
    def features(xb: torch.Tensor) -> torch.Tensor:
        return boundary_inputs(handle, args.freeze_until, xb, len(xb)).contiguous(memory_format=torch.channels_last)

    pipe = best_of({
        "ours": lambda: results.__setitem__("pipe", decode_split(ds, handle, 2, progress=False, then=features,
                                                                 chunk=cache_batch).x),
        "sequential": lambda: floor_cache(frozen_floor, decode_split(ds, handle, 2, progress=False).x, cache_batch),
    }, args.repeat)
    pipe["floor"] = cache["floor"]  # the forward alone, from decoded tensors
    assert torch.allclose(results["pipe"], results["floor"], atol=1e-4), "decode + cache: ours and floor disagree"

    # --- epoch: ours (_train_epoch through started_at) vs a plain loop over the trainable rest
    from mikata.training.loop import DecodedSplit

    net = handle.net
    frozen_names = freeze_until(net, args.freeze_until)
    ours_opt = make_optimizer(net, handle.metadata["head"])
    freeze_until(ref_net, args.freeze_until)
    floor_opt = make_optimizer(ref_net, handle.metadata["head"])
    splits = {"ours": DecodedSplit(results["ours"], decoded.y, []),  # as ``train`` stores them: channels-last
              "ours_nchw": DecodedSplit(feats, decoded.y, [])}
    feats_cl = feats.contiguous(memory_format=torch.channels_last)  # the floor converts once, not per batch
    g = {k: torch.Generator().manual_seed(0) for k in ("ours", "ours_nchw", "floor", "floor_cl")}
    losses: dict[str, float] = {}
    fns = {}
    splits["ours_onednn"] = splits["ours"]
    g["ours_onednn"] = torch.Generator().manual_seed(0)
    with started_at(net, args.freeze_until) as feed:
        for name, fmt in (("ours", torch.channels_last), ("ours_nchw", torch.contiguous_format),
                          ("ours_onednn", torch.channels_last)):
            def ours(name=name, fmt=fmt) -> None:
                net.to(memory_format=fmt)
                # "ours_onednn": every weight gradient from PyTorch's convolution backward (context: the gain
                # of faster_depthwise_grads)
                with contextlib.nullcontext() if name == "ours_onednn" else faster_depthwise_grads(net):
                    losses[name] = _train_epoch(net, lambda x: feed(handle.model, x), frozen_names, ours_opt,
                                                splits[name], dataclasses.replace(
                                                    opts, channels_last=fmt == torch.channels_last),
                                                g[name], fmt, "bench", False)[0]
            fns[name] = ours
        for name, fmt, f in (("floor", torch.contiguous_format, feats), ("floor_cl", torch.channels_last, feats_cl)):
            def floor(name=name, fmt=fmt, f=f) -> None:
                rest_floor.to(memory_format=fmt)
                losses[name] = floor_epoch(rest_floor, floor_opt, f, decoded.y, opts.batch_size, g[name])
            fns[name] = floor
        epoch = best_of(fns, args.repeat)
        net.to(memory_format=torch.contiguous_format)
    return {"size": size, "images": len(decoded), "cache": cache, "pipe": pipe, "epoch": epoch, "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 160, 224])
    ap.add_argument("--images", type=int, default=256, help="training images (Fashion-MNIST, balanced over 10 classes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--freeze-until", default="blocks.9")
    ap.add_argument("--either-format", action="store_true", help="ratio from our faster memory format (what "
                    "`mikata train` would pick if it chose per run), not only its default channels-last")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    from mikata.data.idx import write_fashion_mnist

    print(f"lite0, frozen until {args.freeze_until}, batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.clock} clock, best of {args.repeat}; ratio = floor s / ours s (goal >= 0.9)")
    print(f"{'size':>4} {'images':>6} | {'cache ours s':>12} {'floor s':>8} {'ratio':>5} | {'decode+cache ours s':>19} "
          f"{'seq s':>6} {'ratio':>5} | {'epoch ours s':>12} {'(NCHW)':>6} {'(oneDNN)':>8} {'floor s':>8} {'(CL)':>6} "
          f"{'ratio':>5} {'oneDNN ratio':>12} | last loss ours/floor", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_fashion_mnist(Path(tmp) / "fashion", per_class=max(1, args.images // 10), seed=0)
        for size in args.sizes:  # each row as soon as its size is measured
            r = run_size(size, data, args)
            c, p, e = r["cache"], r["pipe"], r["epoch"]
            ours = min(e["ours"], e["ours_nchw"]) if args.either_format else e["ours"]
            floor = min(e["floor"], e["floor_cl"])  # the faster plain loop: contiguous or channels-last
            print(f"{r['size']:>4} {r['images']:>6} | {c['ours']:>12.2f} {c['floor']:>8.2f} {c['floor'] / c['ours']:>5.2f} | "
                  f"{p['ours']:>19.2f} {p['sequential']:>6.2f} {p['floor'] / p['ours']:>5.2f} | "
                  f"{e['ours']:>12.2f} {e['ours_nchw']:>6.2f} {e['ours_onednn']:>8.2f} {e['floor']:>8.2f} "
                  f"{e['floor_cl']:>6.2f} {floor / ours:>5.2f} {floor / e['ours_onednn']:>12.2f} | "
                  f"{r['losses']['ours']:.3f}/{r['losses']['floor']:.3f}", flush=True)

if __name__ == "__main__":
    main()
