"""Explain image files into a folder: per image a figure PNG, the raw maps as .npy, a JSON summary.

Example:
    >>> summary = explain_files(handle, ["chelsea.png"], ["gradcam", "smoothgrad"], out_dir="out")  # doctest: +SKIP
    >>> summary[0]["figure"]                                                                       # doctest: +SKIP
    'out/chelsea_explain.png'
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mikata.attribution.engine import check_methods, explain
from mikata.attribution.figure import draw_figure
from mikata.data.images import load_image
from mikata.data.filenames import shown
from mikata.errors import ImageDecodeError
from mikata.models.handle import ModelHandle
from mikata.display import check_colormap, to_uint8_image

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def explain_files(
    handle: ModelHandle,
    paths: Sequence[str | os.PathLike],
    methods: Sequence[str],
    targets="top1",
    layer: str | None = None,
    out_dir: str | os.PathLike = "explain",
    options: dict | None = None,
    cmap: str | None = None,
    alpha: float = 0.5,
    top: int = 5,
    progress: bool = True,
    signed_cmap: str | None = None,
) -> list[dict]:
    """One summary dict per path (``error`` set for files that could not be decoded); also written
    as ``summary.json`` in ``out_dir``. Images are explained one at a time so a figure appears as
    soon as it is ready; all methods and targets of an image share passes."""
    methods = check_methods(methods)
    check_colormap(cmap)
    check_colormap(signed_cmap, "signed colormap")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = handle.mode
    summaries = []
    items = [str(p) for p in paths]
    if progress and len(items) > 1:
        from mikata.progress import progress as bar

        items = bar(items, desc=f"explain: {', '.join(methods)}", unit="image", first="first image")
    for path in items:
        stem = _safe(Path(path).stem)
        try:
            x = handle.preprocess([load_image(path, mode=mode)])  # (1, C, H, W)
        except ImageDecodeError as e:  # undecodable, or too large to resize: this image's error only
            log.warning("cannot read %s: %s", shown(path), e.reason)
            summaries.append({"path": path, "error": e.reason})
            continue
        x = x.to(handle.device)  # (1, C, H, W): the device once; maps and probabilities come back
        attributions = explain(handle, x, methods, targets, layer, options, progress=progress)
        with torch.no_grad():
            probs = handle.model(x).float().softmax(1)[0].cpu()  # (K,)
        fig = draw_figure(to_uint8_image(handle.denormalize(x)[0]), attributions, probs, handle.class_names,
                          0, top, cmap, alpha, title=shown(Path(path).name), signed_cmap=signed_cmap)
        fig_path = out / f"{stem}_explain.png"
        fig.savefig(fig_path)
        entry = {"path": path, "figure": str(fig_path), "top": [
            {"class": handle.class_names[i], "id": i, "probability": p}
            for p, i in zip(*[v.tolist() for v in probs.topk(min(top, probs.numel()))])], "maps": []}
        for a in attributions:
            npy = out / f"{stem}_{_safe(a.method)}_{_safe(a.target_spec)}.npy"
            np.save(npy, a.raw[0].detach().float().cpu().numpy())
            d = a.summary(handle.class_names)
            d["targets"] = d["targets"][0]
            d["info"] = {k: (v[0] if isinstance(v, list) and v else v) for k, v in d["info"].items()}
            d["raw"] = str(npy)
            entry["maps"].append(d)
        summaries.append(entry)
    (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    return summaries
