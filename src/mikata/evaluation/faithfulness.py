"""Deletion and insertion curves (Petsiuk et al. 2018, RISE) and their AUC, batched.

Pixels are removed (deletion) or revealed (insertion) in decreasing order of attribution, ``steps``
equal slices at a time; after each slice the model's softmax probability of the target class is
read. A faithful map makes the deletion curve fall fast (low AUC) and the insertion curve rise fast
(high AUC); the same curves for a random pixel order are the baseline every method must beat.

Unit: by default square regions on a 14 x 14 grid (16 px at 224 px) ordered by their mean
attribution (Samek et al. 2016's region perturbation); ``patch=1`` orders single pixels as RISE
does. With single pixels a RANDOM order scatters isolated holes that wreck a CNN's prediction
faster than any map's coherent order (measured on EfficientNet-Lite0 and photos: the random
baseline then beats every method at deletion), so regions are the fair default.

Fill (what a removed region becomes; insertion starts from an image made of it): ``auto`` is
RISE's own choice, ``zero`` for deletion and ``blur`` for insertion; one for both (default blur); or
one per mode, ``deletion=blur,insertion=mean`` (see ``mode_fills``):
``blur`` a Gaussian-blurred copy of the image (Petsiuk's insertion start, sigma 5 px at 224 px),
``mean`` each image's per-channel mean, ``zero`` 0 in the model's input space (the dataset mean
colour), ``road`` noisy linear imputation from the kept neighbours (ROAD, Rong et al. 2022:
each removed pixel is the weighted mean of its 8 neighbours, 1/6 direct and 1/12 diagonal,
solved as one sparse linear system per image and step, plus Gaussian noise sigma 0.01 of the
pixel range; slower — a scipy sparse solve per perturbed image — so use fewer steps);
``black`` / ``white`` / ``uniform-noise`` the attribution baselines of those names
(``mikata.attribution.baselines``: black or white pixels, seeded uniform pixel noise), so the curves
can remove regions towards the same reference the maps were computed from.

All (image, step) inputs are built on the fly from a per-image rank map and run through the
model in chunks sized by a memory budget, in ``torch.inference_mode`` with channels-last memory
for conv nets: the cost is the N x steps forwards and nothing else.

Example:
    >>> curves = perturbation_curves(handle, x, maps, ids, steps=100, fill="blur")   # doctest: +SKIP
    >>> auc(curves["deletion"]).mean(), auc(curves["insertion"]).mean()            # doctest: +SKIP
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.devices import for_chunks
from mikata.models.handle import ModelHandle

FILLS = ("auto", "blur", "mean", "zero", "road", "black", "white", "uniform-noise")
AUTO_FILL = {"deletion": "zero", "insertion": "blur"}  # RISE's own choice (Petsiuk et al. 2018)
MODES = ("deletion", "insertion")


@contextmanager
def channels_last(module: torch.nn.Module, probe: torch.Tensor | None = None, enable: bool = True) -> Iterator[bool]:
    """Run a conv net with channels-last weights (much faster on CPU at larger batches); the
    module's 4-D parameters are put back to contiguous memory afterwards. Yields whether it applied:
    not for nets without convs, nor for nets whose forward breaks on channels-last tensors (a
    ``.view`` after a conv), which one forward of ``probe`` finds out (give it 2 images: on this CPU build
    a batch of one runs 10-20x slower than a batch of two through EfficientNet-Lite0).

    Nested: inside a block that already converted the module, it yields True and leaves the module
    as the outer block will restore it."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    has_conv = enable and bool(weights)
    if not has_conv:
        yield False
        return
    # weights whose two layouts differ (a 1x1 or depthwise kernel is both at once) tell which one is in use
    telling = [p for p in weights if p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last)]
    if telling and not any(p.is_contiguous() for p in telling):
        yield True  # an outer block converted it (and probed its forward)
        return
    module.to(memory_format=torch.channels_last)
    try:
        ok = True
        if probe is not None:
            try:
                with torch.inference_mode():
                    module(probe.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                ok = False
                module.to(memory_format=torch.contiguous_format)
        yield ok
    finally:
        module.to(memory_format=torch.contiguous_format)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflect padding (radius 3 sigma)."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    r_h, r_w = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)
    y = F.pad(x, (r_w, r_w, 0, 0), mode="reflect")
    y = F.conv2d(y, k[r - r_w:r + r_w + 1].view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    y = F.pad(y, (0, 0, r_h, r_h), mode="reflect")
    return F.conv2d(y, k[r - r_h:r + r_h + 1].view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def mode_fills(fill: str, modes: Sequence[str] = MODES) -> dict[str, str]:
    """The fill of each mode from one ``fill`` text: a name for both modes, ``auto`` (RISE's zero for
    deletion, blur for insertion), or one per mode, ``deletion=blur,insertion=mean``.

    One per mode matters for images without fine detail (28-px Fashion-MNIST upsampled to 64 px): a
    blurred copy still shows the class (the model gives it p 0.7-0.95), so an insertion that starts
    from it cannot tell a good order from a random one, while a mean-colour start holds no evidence.
    ``road`` (noisy imputation from the kept neighbours) suits deletion best: the holes it leaves
    carry no off-distribution colour, so a random order's scattered holes no longer win by
    breaking the image (ROAD, Rong et al. 2022).
    """
    text = str(fill).strip()
    if "=" not in text:
        if text not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)} or deletion=NAME,insertion=NAME")
        return {m: (AUTO_FILL[m] if text == "auto" else text) for m in modes}
    out = dict(AUTO_FILL)
    for part in filter(None, (p.strip() for p in text.split(","))):
        mode, _, name = (t.strip() for t in part.partition("="))
        if mode not in MODES or name not in FILLS or name == "auto":
            raise ValueError(f"fill {fill!r}: {part!r} is not MODE=NAME with MODE deletion or insertion and NAME "
                             f"one of {', '.join(f for f in FILLS if f != 'auto')}")
        out[mode] = name
    if text.count("=") < 2:
        raise ValueError(f"fill {fill!r}: name both modes, e.g. deletion=blur,insertion=mean")
    return {m: out[m] for m in modes}


def fill_image(x: torch.Tensor, fill: str, sigma: float | None = None, handle: ModelHandle | None = None,
               seed: int = 0) -> torch.Tensor:
    """What removed pixels become, per image: ``(N, C, H, W)`` (``road`` is per step, see ``road_impute``);
    ``black``, ``white`` and ``uniform-noise`` need the ``handle`` (its normalization)."""
    if fill in ("black", "white", "uniform-noise"):
        from mikata.attribution.baselines import make_baseline

        if handle is None:
            raise ValueError(f"fill {fill!r} needs the model handle (its normalization)")
        return make_baseline(handle, x, fill, seed)
    if fill == "blur":
        sigma = sigma if sigma is not None else 5.0 * x.shape[-1] / 224
        return gaussian_blur(x, sigma)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if fill in ("zero", "road"):
        return torch.zeros_like(x)
    raise ValueError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)}")


def unit_ranks(maps: torch.Tensor, patch: int = 1) -> tuple[torch.Tensor, int]:
    """``(N, H, W)`` maps -> per-pixel rank of the ``patch`` x ``patch`` region holding it (0 = the
    region with the highest mean attribution; ties by position), and the number of regions.

    ``patch=1`` orders single pixels (Petsiuk); larger patches order regions as Samek et al.'s
    region perturbation does, so a random order makes the same kind of holes as a map's order."""
    n, h, w = maps.shape
    m = maps.detach().float()[:, None]
    if patch > 1:
        ph, pw = -h % patch, -w % patch
        m = F.avg_pool2d(F.pad(m, (0, pw, 0, ph), mode="replicate"), patch)  # (N, 1, h', w')
    flat = m.reshape(n, -1)
    order = torch.argsort(-flat, dim=1, stable=True)  # (N, U)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand(n, -1).contiguous())
    ranks = ranks.view(n, *m.shape[-2:])
    if patch > 1:
        ranks = ranks.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, :h, :w]
    return ranks.contiguous(), flat.shape[1]


def default_patch(size: tuple[int, int]) -> int:
    """Region side for a 14 x 14 grid of regions (16 px at 224 px), at least 1."""
    return max(1, round(min(size) / 14))


def step_counts(pixels: int, steps: int) -> torch.Tensor:
    """How many pixels (or regions) are perturbed at each point 0..steps: ``round(k * pixels / steps)``."""
    return torch.round(torch.arange(steps + 1, dtype=torch.float64) * pixels / steps).long()


def road_impute(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                generator: torch.Generator | None = None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """ROAD noisy linear imputation of one image ``(C, H, W)`` where ``removed`` ``(H, W)`` is True.

    Each removed pixel equals the weighted mean of its in-image 8 neighbours (1/6 direct, 1/12
    diagonal, re-normalised at borders); known pixels stay fixed; one sparse solve per channel.
    Gaussian noise of ``noise`` x ``scale`` (the per-channel pixel range in model space) is added.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    c, h, w = x.shape
    rem = removed.cpu().numpy().reshape(-1)
    idx = np.flatnonzero(rem)
    if idx.size == 0:
        return x.clone()
    pos = -np.ones(h * w, dtype=np.int64)
    pos[idx] = np.arange(idx.size)
    ys, xs = np.divmod(idx, w)
    rows, cols, vals = [], [], []
    weight_sum = np.zeros(idx.size)
    known_terms = []  # (unknown row, flat neighbour index, weight) of known neighbours
    offsets = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    for dy, dx, wt in offsets:
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        r = np.flatnonzero(ok)
        nb = ny[ok] * w + nx[ok]
        weight_sum[r] += wt
        unknown = rem[nb]
        rows.append(r[unknown])
        cols.append(pos[nb[unknown]])
        vals.append(np.full(unknown.sum(), -wt))
        known_terms.append((r[~unknown], nb[~unknown], wt))
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(idx.size, idx.size))
    a = (a + sp.diags(weight_sum)).tocsc()
    xn = x.detach().cpu().double().numpy().reshape(c, -1)
    out = x.detach().clone().reshape(c, -1)
    b = np.zeros((idx.size, c))  # one right-hand side per channel: the matrix is factorized once for all
    for r, nb, wt in known_terms:
        np.add.at(b, r, wt * xn[:, nb].T)
    sols = np.asarray(spsolve(a, b)).reshape(idx.size, c)
    for ch in range(c):
        vals_t = torch.from_numpy(np.ascontiguousarray(sols[:, ch])).to(x.dtype)
        if noise > 0:
            s = float(scale[ch]) if scale is not None else 1.0
            vals_t = vals_t + noise * s * torch.randn(idx.size, generator=generator, dtype=x.dtype)
        out[ch, torch.from_numpy(idx).to(x.device)] = vals_t.to(x.device)  # scipy solved on the CPU
    return out.view(c, h, w)


def perturbation_curves(
    handle: ModelHandle,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    steps: int = 100,
    fill: str = "blur",
    modes: Sequence[str] = MODES,
    patch: int | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    batch_cap: int = 64,
    base_probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "perturbation curves",
    ends: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Deletion / insertion curves ``{mode: (N, steps + 1)}`` of target-class softmax probability.

    ``maps`` ``(N, H, W)`` at input resolution, higher = more important. Point 0 of deletion and
    point ``steps`` of insertion are the unperturbed image (``base_probs`` ``(N,)`` when known,
    else one forward). Point ``steps`` of deletion and point 0 of insertion are the fully filled image,
    whatever the map: one forward of the N filled images per fill serves both (except ROAD's, drawn
    anew at every point), and ``ends`` (a dict the caller keeps, ``{fill: (N,)}``, for calls on the
    same ``x`` and targets) serves it to every map's curves. The other points are one forward each,
    batched, on ``handle.device`` at ``handle.precision`` (bf16 autocast on a capable GPU under
    "auto"); a chunk that runs out of device memory is halved and retried. The curves come back on
    the CPU.
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode {bad[0]!r}; use deletion and/or insertion")
    device = handle.device
    x = x.detach().float().to(device)
    n, c, h, w = x.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"maps must be (N, H, W) = {(n, h, w)}, got {tuple(maps.shape)}")
    maps = maps.to(device)
    ids = torch.as_tensor(targets, dtype=torch.long).view(n).to(device)
    patch = default_patch((h, w)) if patch is None else int(patch)
    ranks, units = unit_ranks(maps, patch)  # (N, H, W)
    counts = step_counts(units, steps).to(device)  # (steps + 1,) regions perturbed at each point
    fills = mode_fills(fill, modes)
    baseline_fills = ("black", "white", "uniform-noise")  # the only fills that need the normalization
    filled = {f: fill_image(x, f, handle=handle) if f in baseline_fills else fill_image(x, f)
              for f in set(fills.values())}
    scale = None
    if "road" in fills.values():
        std = torch.tensor(handle.std, dtype=x.dtype)  # (C,) on the CPU, where ROAD's solve runs
        scale = 1.0 / std if std.numel() == c else torch.ones(c)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    # deletion: points 1..steps (point 0 is the image); insertion: points 0..steps-1 (point steps is the image);
    # the fully filled point (deletion's last, insertion's first) once per fill, unless ROAD draws it
    full = {m: 0 if m == "insertion" else steps for m in modes if fills[m] != "road"}
    jobs = [(m, i, k) for m in modes for i in range(n)
            for k in (range(1, steps + 1) if m == "deletion" else range(steps)) if full.get(m) != k]
    if base_probs is None:
        base_probs = _probs(handle, x, ids)
    curves = {m: torch.empty(n, steps + 1) for m in modes}
    for m in modes:
        curves[m][:, 0 if m == "deletion" else steps] = base_probs.float().cpu()
    ends = {} if ends is None else ends
    size = chunk_size(x, budget_mb, with_grad=False, cap=batch_cap)
    model = handle.model
    with channels_last(model, probe=x[:2].repeat(2 // min(2, n), 1, 1, 1)) as fast, torch.inference_mode(), \
            handle.autocast():  # convert outside inference mode
        for m, k in full.items():
            if fills[m] not in ends:
                img = filled[fills[m]].contiguous(memory_format=torch.channels_last if fast else torch.contiguous_format)
                ends[fills[m]] = torch.cat([torch.softmax(model(img[s:s + size]).float(), 1) for s in range(0, n, size)]
                                           ).gather(1, ids.view(-1, 1))[:, 0].cpu()
            curves[m][:, k] = ends[fills[m]].float()

        def run(start: int, stop: int) -> None:
            part = jobs[start:stop]
            img = torch.tensor([j[1] for j in part], device=device)
            k_pix = counts[torch.tensor([j[2] for j in part], device=device)]  # (B,)
            is_ins = torch.tensor([j[0] == "insertion" for j in part], device=device)
            top = ranks[img] < k_pix.view(-1, 1, 1)  # (B, H, W) the counts[k] most attributed pixels
            perturbed = torch.where(is_ins.view(-1, 1, 1), ~top, top)  # (B, H, W) pixels to fill
            if any(fills[j[0]] == "road" for j in part):  # ROAD: one sparse solve per perturbed image
                batch = torch.stack([road_impute(x[i], perturbed[b], generator=gen, scale=scale)
                                     if fills[mode] == "road" else
                                     torch.where(perturbed[b][None], filled[fills[mode]][i], x[i])
                                     for b, (mode, i, _) in enumerate(part)])
            else:
                base = filled[fills[part[0][0]]][img]
                for f in set(fills.values()) - {fills[part[0][0]]}:  # chunks spanning both modes
                    use = torch.tensor([fills[j[0]] == f for j in part], device=device).view(-1, 1, 1, 1)
                    base = torch.where(use, filled[f][img], base)
                batch = torch.where(perturbed[:, None], base, x[img])  # (B, C, H, W)
            batch = batch.contiguous(memory_format=torch.channels_last if fast else torch.contiguous_format)
            p = torch.softmax(model(batch).float(), dim=1).gather(1, ids[img].view(-1, 1))[:, 0]
            for (mode, i, k), v in zip(part, p.cpu().tolist()):
                curves[mode][i, k] = v

        for_chunks(len(jobs), size, run, device=device, progress=progress, desc=desc)
    return curves


def _probs(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), handle.autocast():
        return torch.softmax(handle.model(x).float(), dim=1).gather(1, ids.view(-1, 1))[:, 0]


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoidal area under ``(N, steps + 1)`` curves over a [0, 1] fraction axis: ``(N,)``."""
    steps = curve.shape[1] - 1
    return torch.trapezoid(curve, dx=1.0 / steps, dim=1)
