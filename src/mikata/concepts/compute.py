"""``compute_atlas``: a run's concept atlas, class by class, stored in the run and resumable.

For each class, a seeded sample of up to ``sample`` of the images labeled with it goes through the model
once, forward and backward to the layer (``attribution.passes.gradient_pass``: hooks from ``mikata.hooks``,
parameters frozen, nothing below the layer differentiated), on the user's device. Their non-negative
activations, one row per position (N·h·w, C), are factorized into ``per_class`` concepts (``nmf``);
the gradients of the class logit split the evidence over the concepts (``importance``). Negative
activations (a layer without a rectifier after it, as lite0's MBConv bottlenecks) are clamped at 0 by
default, as CRAFT and DFF do: the evidence they carry goes to the class's reported residual. ``signed="split"``
factorizes ``[A⁺, A⁻]`` instead (``nmf.split_sign``, exact); ``"auto"`` splits when the negatives carry more
than ``NEGATIVE_EVIDENCE`` of |gradient × activation|. Clamping is the default because on concepts-eval's
planted runs the clamped concepts localize a planted mark tighter (area 0.09 against 0.16 sign-split). Why a sample and
not the whole class: the factorization needs every row at once for an exact HALS sweep, and a seeded
sample of a few hundred images (thousands of positions) already pins down a handful of directions; the
memory is bounded by ``sample`` x positions x channels whatever the run's size, so a 1M-row run costs what
a 500-image class costs. Errors, slices and strategies are measured on the same sample (all of a class's
images when it has fewer).

Then per concept: its presence, exemplars with boxes in original pixels, where it sits (center, spread)
and how much of the image it covers; a deletion test (its region filled with the image's mean colour, or for
a concept off the object its region and the image's whole context filled with the other classes' mean image,
on up to ``deletion_images`` images that have it: flip rate and mean drop of P(class)); and whether it looks
like a shortcut (``shortcuts.suspect``). Each finished class is written at once, so a killed run resumes
at the next class.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mikata.concepts import describe as D
from mikata.concepts import store as S
from mikata.concepts.passes import BATCH, decode_images, geometries, layer_pass, predict, shared_handle
from mikata.errors import ChoiceError, MikataError
from mikata.progress import one_line

log = logging.getLogger(__name__)
MAX_PER_CLASS = 50
TOP_EXEMPLARS = 6
NEGATIVE_EVIDENCE = 0.1  # signed="auto": share of |gradient x activation| in negative activations that splits
SIGNED = ("clamp", "split", "auto")
CONTEXT_VERSION = 2  # the off-object deletion and the class-level tests (``_reference_data``); in the cache key
REFERENCE_IMAGES = 32  # per class, for the other classes' reference image and context
REFERENCE_TOTAL = 1024  # images decoded for the references at most (fewer per class when there are many classes)
REFERENCE_CLASSES = 64  # "the other classes" of a class: a seeded subset of this many when the run has more
CONTEXT_STD = 0.3  # context: pixels where the other classes' images vary by at most this share of the most varying
OFF_OBJECT = 0.4  # a concept with at least this share of its map's mass on the context is off the object
CLASS_CONTEXT_STD = 0.4  # the class-level context test's context (``classtests``): a wider one than the concepts'


@dataclass
class Options:
    layer: str
    per_class: int = 5
    sample: int = 500
    seed: int = 0
    deletion_images: int = 32
    defines: dict[str, list[str]] = field(default_factory=dict)  # name -> its image files (sorted)
    signed: str = "clamp"
    split: str | None = None  # only the rows of this split (None: the whole run)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "per_class": self.per_class, "sample": self.sample, "seed": self.seed,
                "deletion_images": self.deletion_images, "signed": self.signed, "split": self.split,
                "context": [CONTEXT_VERSION, CONTEXT_STD, OFF_OBJECT, REFERENCE_IMAGES, CLASS_CONTEXT_STD],
                "defines": {n: [len(f), _files_digest(f)] for n, f in sorted(self.defines.items())}}


def _files_digest(files: list[str]) -> str:
    import hashlib

    h = hashlib.sha1()
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def check_arguments(per_class: int, sample: int, defines: dict[str, str] | None) -> dict[str, list[str]]:
    """Refuse bad numbers and define folders before any work; ``NAME -> its image files``."""
    from mikata.data.images import expand_image_paths

    if int(per_class) < 1 or int(per_class) > MAX_PER_CLASS:
        raise MikataError(f"--per-class {per_class}: give 1..{MAX_PER_CLASS} concepts per class")
    if int(sample) < 2:
        raise MikataError(f"--sample {sample}: give at least 2 images per class (e.g. 500)")
    out: dict[str, list[str]] = {}
    for name, folder in (defines or {}).items():
        if not name or "/" in name or not name.replace("-", "").replace("_", "").isalnum():
            raise MikataError(f"--define {name}={folder}: name the concept with letters, digits, - or _")
        if not Path(folder).is_dir():
            raise MikataError(f"--define {name}={folder}: {folder} is not a folder; give a folder of example images")
        files = sorted(str(p) for p in expand_image_paths([folder], missing_ok=True))
        if len(files) < 5:
            raise MikataError(f"--define {name}={folder}: {len(files)} images found; give at least 5 example images")
        out[name] = files
    return out


def resolve_classes(names: list[str], classes: Sequence[str | int] | None) -> list[int]:
    if not classes:
        return list(range(len(names)))
    lower = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for c in classes:
        if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.strip().isdigit() and c.strip() not in names):
            if not 0 <= int(c) < len(names):
                raise ChoiceError("class id", c, [f"0..{len(names) - 1}"])
            out.append(int(c))
        elif str(c).lower() in lower:
            out.append(lower[str(c).lower()])
        else:
            raise ChoiceError("class", c, names)
    return list(dict.fromkeys(out))


@one_line  # in a notebook, every step of the call on one line
def compute_atlas(run_dir: str | os.PathLike, *, layer: str | None = None, classes: Sequence[str | int] | None = None,
                  per_class: int = 5, sample: int = 500, device: str | None = "cpu", model=None,
                  progress: bool = True, defines: dict[str, str] | None = None, seed: int = 0,
                  deletion_images: int = 32, signed: str = "clamp", split: str | None = None):
    """Compute (or resume) the run's concept atlas and write it to ``RUN/concepts/``; returns the ``Atlas``.

    ``model``: a ``ModelHandle`` or a spec the user typed, when the run's own model cannot be loaded
    (its weights hash is checked as for maps). ``defines``: ``{NAME: folder of example images}`` for TCAV.
    ``signed``: what to do with negative activations ("clamp", "split" or "auto"; see the module docstring).
    ``split``: only that split's rows (e.g. "test": concepts of the held-out images, as ``mikata report --split``
    shows them); None: every row. The atlas records it (``Atlas.split``); a later call with another split
    replaces it.
    Bad arguments (``per_class`` < 1, an unknown class or layer, a missing define folder) are refused
    before any image is decoded."""
    from mikata.presentation.maps import MapService
    from mikata.concepts.atlas import Atlas
    from mikata.progress import Progress

    files = check_arguments(per_class, sample, defines)
    if signed not in SIGNED:
        raise ChoiceError("signed", signed, list(SIGNED))
    handle = model if model is not None and not isinstance(model, str) else None
    spec = model if isinstance(model, str) else None
    with MapService(run_dir, handle=handle, model=spec, device=device or "cpu") as service:
        names = list(service.identity["classes"])
        wanted = resolve_classes(names, classes)
        if split is not None and split not in service.store.split_names():
            raise ChoiceError("split", split, service.store.split_names())
        ids, labels, preds = _row_arrays(service.store, split)
        if not len(ids):
            raise MikataError(f"{run_dir} holds no scanned images; run `mikata scan` first")
        h = shared_handle(service)  # a cross-validation run: its first fold's model, for the layers they share
        layer = _check_layer(h, layer or service.identity.get("layer") or h.default_layer)
        opts = Options(layer, int(per_class), int(sample), int(seed), int(deletion_images), files, signed, split)
        version = service.store.version()
        key = S.make_key(version, service.identity.get("weights_sha1"), opts.as_dict())
        todo = [c for c in wanted if (labels == c).any()]
        if not todo:
            raise MikataError(f"no scanned image is labeled {', '.join(names[c] for c in wanted)}; "
                              "pick classes that have images (`mikata audit` lists them)")
        cavs = _cavs(service, opts, ids, progress) if files else {}
        refs = _reference_data(service, ids, labels, todo, opts.seed)
        parts: dict[int, dict] = {}
        sizes = {c: min(int((labels == c).sum()), opts.sample) for c in todo}
        with Progress(sum(sizes.values()), f"concepts of {layer} ({len(todo)} classes)", "img", progress,
                      first="first class") as bar:
            for c in todo:
                jpath, npath = S.class_paths(run_dir, c)
                part = S.read_json(jpath)
                if part is None or part.get("key") != key or S.read_arrays(npath) is None:
                    part = _class_part(service, c, ids[labels == c], labels[labels == c], preds[labels == c],
                                       opts, key, cavs, names, bar.update, refs.get(c))
                    S.write_arrays(npath, part.pop("_arrays"))
                    S.write_json(jpath, part)
                else:
                    log.debug("concepts of class %s: kept from a previous computation", names[c])
                    bar.update(sizes[c])
                parts[c] = part
        doc = _assemble(parts, names, layer, key, version, opts)
        S.write_json(S.folder(run_dir) / "atlas.json", doc)
    return Atlas(Path(run_dir), doc)


def _check_layer(h, layer: str | None) -> str:
    from mikata.hooks import get_layer

    if not layer:
        raise MikataError("the run records no layer and the model has no default one; give --layer "
                          "(`mikata layers MODEL` lists them)")
    get_layer(h.net, layer)  # ChoiceError listing the layers
    return layer


def negative_evidence(A: torch.Tensor, G: torch.Tensor) -> float:
    """Share of the absolute gradient × activation that sits in negative activations (0 for a non-negative layer)."""
    neg = float((G * A.clamp_max(0)).sum().abs())
    pos = float((G * A.clamp_min(0)).sum().abs())
    return neg / (neg + pos) if neg + pos > 0 else 0.0


def _sample(ids: np.ndarray, n: int, seed: int, cls: int) -> np.ndarray:
    if len(ids) <= n:
        return ids
    rng = np.random.default_rng([seed, cls])
    return np.sort(rng.choice(ids, size=n, replace=False))


def _row_arrays(store, split: str | None = None, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, labels and predictions of every usable row (of ``split`` when given; ``-1`` where missing), read in
    chunks: three int64 arrays, whatever the run's size (no row objects are kept)."""
    parts, last = [], 0
    while True:
        rows = store.rows(status="ok", split=split, columns=("id", "label", "pred"), tuples=True, after_id=last,
                          limit=chunk)
        if not rows:
            break
        parts.append(np.array([[r[0], -1 if r[1] is None else r[1], -1 if r[2] is None else r[2]] for r in rows],
                              np.int64))
        last = int(rows[-1][0])
    table = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    return table[:, 0], table[:, 1], table[:, 2]


def _class_part(service, c: int, ids: np.ndarray, labels: np.ndarray, preds: np.ndarray, opts: Options, key: str,
                cavs: dict, names: list[str], advance=None, ref=None) -> dict:
    from mikata.concepts import shortcuts
    from mikata.concepts.shortcuts import IMPORTANT, TESTED_IMPORTANCE
    from mikata.concepts.importance import contributions, shares
    from mikata.concepts.nmf import nmf, split_gradient, split_sign
    from mikata.concepts.strategies import strategies

    cname = names[c]
    chosen = _sample(ids, opts.sample, opts.seed, c)
    got = layer_pass(service, chosen.tolist(), c, opts.layer, advance=advance)
    if got is None:
        raise MikataError(f"none of the images of class {cname} can be decoded any more; scan the run again")
    A, G, prob, live, sizes, kept = got  # (n, h, w, C) x2, (n,), (n,), (n, 2), (n,)
    n, gh, gw, C = A.shape
    G_layer = G  # the layer's own channels, for TCAV
    pos = {int(i): j for j, i in enumerate(ids)}
    lab = np.array([labels[pos[int(i)]] for i in kept])
    prd = np.array([preds[pos[int(i)]] for i in kept])
    split = opts.signed == "split" or (opts.signed == "auto" and negative_evidence(A, G) > NEGATIVE_EVIDENCE)
    if split:  # factorize [A⁺, A⁻]: exact, non-negative
        A, G = split_sign(A), split_gradient(G)
        C = A.shape[-1]
    else:  # none, or none that matters (a pre-ReLU layer: the gradient is 0 where the ReLU cuts)
        A = A.clamp_min(0)
    k = min(opts.per_class, C, n * gh * gw)
    dev = shared_handle(service).device
    U, W = nmf(A.reshape(-1, C).to(dev), k, seed=opts.seed)
    U, W = U.cpu().reshape(n, gh * gw, k), W.cpu()
    per, residual = contributions(U, W, G.reshape(n, -1, C), A.reshape(n, -1, C))
    order = torch.argsort(per.mean(0), descending=True, stable=True)  # concept 0 = the most important
    U, W, per = U[:, :, order], W[order], per[:, order]
    total = per.sum(1) + residual
    Ug = U.reshape(n, gh, gw, k).numpy()
    strength = D.strengths(Ug)
    thresholds = D.presence_threshold(strength)
    has = D.present(strength, thresholds)
    geos = geometries(service.preprocessing, sizes)
    correct = lab == prd
    cnames = [f"{cname}/{j}" for j in range(k)]
    # shares of the class's net evidence: they sum with the residual to 1 (to -1 for a class whose net evidence
    # at the layer is negative, as on an untrained model; to 0 only when there is no evidence at all)
    denom = abs(float(total.mean())) or float((per.abs().sum(1) + residual.abs()).mean()) or 1.0
    layer_dirs = W[:, : W.shape[1] // 2] - W[:, W.shape[1] // 2:] if split else W  # (k, C): in the layer's channels
    share = (per.mean(0) / denom).numpy()  # (k,)
    tested = share >= TESTED_IMPORTANCE  # the others cannot carry a shortcut
    deletion, removal, context = _deletion(service, c, kept, Ug, has & tested[None, :], strength, prob, live,
                                  opts.deletion_images, opts.layer, layer_dirs, share >= IMPORTANT, ref)
    class_findings, context_mask = [], None
    if ref is not None:
        class_findings = _class_tests(service, c, kept, prob, live, opts.deletion_images, ref, Ug, has, cnames, cname)
        context_mask = ref["context"]
    paths = service.store.paths([int(kept[i]) for i in np.unique(np.argsort(-strength, 0, kind="stable")[:TOP_EXEMPLARS])])
    concepts, off_center = [], []
    for j in range(k):
        center, spread, ar, off = D.location(Ug, j, has[:, j], geos)
        off_center.append(round(off, 4))
        best = np.argsort(-strength[:, j], kind="stable")[:TOP_EXEMPLARS]
        exemplars = [{"id": int(kept[i]), "path": str(paths.get(int(kept[i]), "")),
                      "box": D.region_box(Ug[i, :, :, j], geos[i])} for i in best if strength[i, j] > 0]
        entry = {"concept": cnames[j], "importance": float(per[:, j].mean()) / denom,
                 "presence": float(has[:, j].mean()), "exemplars": exemplars,
                 "location": {"center": center, "spread": round(spread, 4)}, "area": round(ar, 4),
                 "deletion": deletion[j]}
        entry["shortcut"], entry["evidence"] = shortcuts.suspect(entry, cname, off, removal[j], context[j])
        concepts.append(entry)
    sh = shares(per).numpy()
    part = {"key": key, "class": cname, "class_id": c, "images": int(n), "sampled_from": int(len(ids)),
            "skipped": int(len(chosen) - n),
            "grid": [gh, gw], "residual": float(residual.mean()) / denom, "accuracy": float(correct.mean()),
            "off_center": off_center, "deletion_direction": removal,
            "concepts": concepts, "class_findings": class_findings,
            "strategies": strategies(sh, correct, np.array(kept), cnames, seed=opts.seed),
            "errors": [D.concept_errors(cnames[j], has[:, j], correct) for j in range(k)],
            "pairs": D.pair_errors(cnames, has, correct, prd, cname, names),
            "slices": D.slices(cname, cnames, has, correct)}
    if cavs:
        from mikata.concepts.tcav import class_scores

        part["tcav"] = {name: class_scores(cav, G_layer.reshape(n, -1)) for name, cav in cavs.items()}
    part["_arrays"] = {"ids": np.array(kept, np.int64), "W": W.numpy().astype(np.float32),
                       "U": Ug.astype(np.float32), "contrib": per.numpy().astype(np.float32),
                       "residual": residual.numpy().astype(np.float32), "total": total.numpy().astype(np.float32),
                       "strength": strength.astype(np.float32), "thresholds": thresholds,
                       "labels": lab.astype(np.int64), "preds": prd.astype(np.int64), "prob": prob.astype(np.float32),
                       "sizes": sizes.astype(np.int64)}
    if context_mask is not None:
        part["_arrays"]["context"] = context_mask.astype(np.float32)
    return part


def _class_tests(service, c: int, kept: np.ndarray, prob: np.ndarray, live: np.ndarray, limit: int, ref: dict,
                 U: np.ndarray, has: np.ndarray, cnames: list[str], cname: str) -> list[dict]:
    """The class-level tests (``classtests``) on up to ``limit`` of the sampled images predicted as the class, in
    the sample's order; the context finding names the concepts whose maps sit most on the context."""
    from mikata.concepts import classtests as T

    rows = np.flatnonzero(live == c)[:limit]
    if not rows.size:
        return []
    x, _, got = decode_images(service, [int(kept[i]) for i in rows])
    if x is None:
        return []
    where = {int(kid): i for kid, i in zip(kept[rows], rows)}
    rows = np.array([where[int(g)] for g in got])

    ids = [int(kept[i]) for i in rows]

    def probs(b: torch.Tensor, at: slice) -> torch.Tensor:
        return predict(service, b, ids[at])

    results = T.run_tests(probs, x, prob[rows], live[rows], c, {"mean": ref["median"], "context": ref["context"],
                                                                 "range": ref["range"]})
    shares = T.context_shares(U, ref["context"], tuple(ref["context"].shape), has)
    ranked = sorted(((cnames[j], float(shares[j])) for j in range(len(cnames)) if shares[j] > 0), key=lambda t: -t[1])
    return T.findings(results, cname, float(ref["context"].mean()), ranked)


def _deletion(service, c: int, kept: list[int], U: np.ndarray, has: np.ndarray, strength: np.ndarray,
              prob: np.ndarray, live: np.ndarray, limit: int, layer: str,
              directions: torch.Tensor, remove: np.ndarray, ref=None) -> tuple[list[dict], list[dict], list[bool]]:
    """Two deletion tests per concept, on the same up to ``limit`` images that have it (strongest first):

    - region: where its map, upsampled to the input, reaches half its maximum, filled with the image's mean
      colour (what a person can see: "this place of the image"); for a concept off the object (at least
      ``OFF_OBJECT`` of its map's mass on the context, ``_references``: a frame, a background), its region and
      the whole context filled with the other classes' mean image instead (a frame or a background is
      spread out: one of its parts alone shows no use);
    - direction: its component ``U_k ⊗ d_k`` removed from the layer's activations at every position, the rest
      of the network run from there (``d_k``: its direction in the layer's channels; catches what a region
      cannot: a frame split over positions, a global brightness shift).

    Each gives how often the prediction of the class flips away (among the images predicted as the class)
    and how much P(class) drops on average. The direction test runs where ``remove`` ``(k,)`` says (the
    concepts important enough to be suspects: it doubles the deletion's forwards)."""
    H, Wd = service.preprocessing.input_size
    k = U.shape[-1]
    chosen = {j: [i for i in np.argsort(-strength[:, j], kind="stable") if has[i, j]][:limit] for j in range(k)}
    need = sorted({int(i) for rows in chosen.values() for i in rows})
    cache: dict[int, torch.Tensor] = {}
    if need:
        x, _, got = decode_images(service, [kept[i] for i in need])
        if x is not None:
            where = {kid: r for r, kid in enumerate(got)}
            cache = {i: x[where[kept[i]]] for i in need if kept[i] in where}


    region, direction, context = [], [], []
    for j in range(k):
        rows = [i for i in chosen[j] if i in cache]
        off = False
        if ref is not None and rows:
            maps = np.stack([D.upsample(U[i, :, :, j], (H, Wd)) for i in rows])
            maps = maps / maps.reshape(len(rows), -1).sum(1).clip(min=1e-12)[:, None, None]
            off = float((maps * ref["concept_context"]).sum((1, 2)).mean()) >= OFF_OBJECT
        if not rows:
            region.append({"flip_rate": 0.0, "mean_drop": 0.0, "images": 0})
            direction.append({"flip_rate": 0.0, "mean_drop": 0.0, "images": 0})
            context.append(False)
            continue
        filled, removed = [], []
        for s in range(0, len(rows), BATCH):
            part = rows[s:s + BATCH]
            x = torch.stack([cache[i] for i in part])  # (b, C, H, W)
            masks = torch.stack([torch.from_numpy(D.upsample(U[i, :, :, j], (H, Wd))) for i in part])  # (b, H, W)
            peak = masks.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
            m = (masks >= D.REGION_FRACTION * peak).float()[:, None]  # (b, 1, H, W)
            if off:  # the region and the whole context, filled with the other classes' mean image
                m = torch.maximum(m, torch.from_numpy(ref["concept_context"]).float()[None, None])
                fill = torch.from_numpy(ref["mean"]).float()[None]
            else:
                fill = x.mean((2, 3), keepdim=True)  # (b, C, 1, 1): each image's mean colour
            ids = [int(kept[i]) for i in part]
            filled.append(predict(service, x * (1 - m) + fill * m, ids))
            if remove[j]:
                delta = torch.from_numpy(U[part, :, :, j])[:, None] * directions[j][None, :, None, None]  # (b, C, h, w)
                removed.append(predict(service, x, ids, layer, delta))
        if not removed:
            direction.append({"flip_rate": 0.0, "mean_drop": 0.0, "images": 0})
        for out, after in ((region, filled), (direction, removed)) if removed else ((region, filled),):
            pa = torch.cat(after).numpy()  # (b, K)
            was = live[rows] == c
            flips = was & (pa.argmax(1) != c)
            out.append({"flip_rate": float(flips.sum() / was.sum()) if was.any() else 0.0,
                        "mean_drop": float((prob[rows] - pa[:, c]).mean()), "images": len(rows)})
        context.append(off)
    return region, direction, context


def _references(service, ids: np.ndarray, labels: np.ndarray, todo: list[int], seed: int) -> dict:
    """Per class ``c``: ``(reference (C, H, W), context (H, W) in {0, 1})`` from up to ``REFERENCE_IMAGES``
    images of each OTHER class: their per-pixel mean, and where they hardly vary (at most ``CONTEXT_STD`` of
    the most varying pixel's std): what the dataset holds around its objects (an empty background, the
    image's edges). {} with fewer than two classes."""
    return {c: (r["mean"], r["concept_context"]) for c, r in _reference_data(service, ids, labels, todo, seed).items()}


def _reference_data(service, ids: np.ndarray, labels: np.ndarray, todo: list[int], seed: int) -> dict[int, dict]:
    """Per class ``c``, from up to ``REFERENCE_IMAGES`` decoded images of each OTHER class:

    - ``mean`` (C, H, W) and ``concept_context`` (H, W): their per-pixel mean and where their per-pixel std is at
      most ``CONTEXT_STD`` of the largest (the off-object deletion of concepts, ``_deletion``);
    - ``median`` (C, H, W) and ``context`` (H, W): their per-pixel median and where their std is at most
      ``CLASS_CONTEXT_STD`` of the largest (the class-level context test, ``classtests``; the median, the
      typical pixel, because a mean over garments of other shapes paints grey where some of them reach);
    - ``range``: the median over their images of each image's low and high intensity quantiles
      (``classtests.quantiles``: the class-level photometric test).

    {} with fewer than two classes. All in the model's input (after the run's preprocessing)."""
    from mikata.concepts.classtests import quantiles

    present = [int(c) for c in np.unique(labels)]
    if len(present) < 2:
        return {}
    each = max(1, min(REFERENCE_IMAGES, REFERENCE_TOTAL // len(present)))  # memory: at most ~REFERENCE_TOTAL images
    images: dict[int, torch.Tensor] = {}
    for c in present:
        x, _, got = decode_images(service, _sample(ids[labels == c], each, seed, c).tolist())
        if x is not None:
            images[c] = x
    out = {}
    for c in todo:
        others = [o for o in images if o != c]
        if len(others) > REFERENCE_CLASSES:  # many classes: a seeded subset of them stands for "the others"
            rng = np.random.default_rng([seed, c])
            others = sorted(rng.choice(others, REFERENCE_CLASSES, replace=False).tolist())
        if not others:
            continue
        x = torch.cat([images[o] for o in others]).double()
        mean = x.mean(0)
        std = (x * x).mean(0).sub(mean * mean).clamp_min(0).mean(0).sqrt()  # (H, W): the channels' mean variance
        top = float(std.max())
        out[c] = {"mean": mean.float().numpy(),
                  "concept_context": (std <= CONTEXT_STD * top).numpy().astype(np.float32),
                  "median": x.median(0).values.float().numpy(),
                  "context": (std <= CLASS_CONTEXT_STD * top).numpy().astype(np.float32),
                  "range": tuple(float(v) for v in quantiles(x).median(0).values)}
    return out


def _cavs(service, opts: Options, ids: np.ndarray, progress: bool) -> dict:
    from mikata.concepts.tcav import train_cavs

    return train_cavs(service, opts, ids, progress)


def _assemble(parts: dict[int, dict], names: list[str], layer: str, key: str, version: tuple, opts: Options) -> dict:
    slices = sorted((s for p in parts.values() for s in p["slices"]), key=lambda s: (-s["gap"], -s["images"]))
    doc = {"format": S.FORMAT, "key": key, "run_version": list(version), "options": opts.as_dict(), "layer": layer,
           "split": opts.split,
           "classes": {names[c]: p["concepts"] for c, p in parts.items()},
           "strategies": {names[c]: p["strategies"] for c, p in parts.items()},
           "errors": {"per_class": {names[c]: p["errors"] for c, p in parts.items()},
                      "pairs": [q for p in parts.values() for q in p["pairs"]]},
           "slices": slices,
           "residual": {names[c]: p["residual"] for c, p in parts.items()},
           "off_center": {names[c]: p["off_center"] for c, p in parts.items()},
           "deletion_direction": {names[c]: p["deletion_direction"] for c, p in parts.items()},
           "class_findings": {names[c]: p.get("class_findings", []) for c, p in parts.items()},
           "images": {names[c]: p["images"] for c, p in parts.items()},
           "skipped": {names[c]: p.get("skipped", 0) for c, p in parts.items()},
           "class_ids": {names[c]: c for c in parts}}
    if any("tcav" in p for p in parts.values()):
        doc["tcav"] = {}
        for c, p in parts.items():
            for name, score in p.get("tcav", {}).items():
                doc["tcav"].setdefault(name, {"classes": {}})["classes"][names[c]] = score
    return doc
