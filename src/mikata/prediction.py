"""Top-k predictions for image files, batched; a bad file is reported and never stops the rest.

Example:
    >>> handle = load_model("efficientnet-lite0")                       # doctest: +SKIP
    >>> [p.top[0] for p in predict(handle, ["chelsea.png"], top=1)]      # doctest: +SKIP
    [('tiger cat', 282, 0.38)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch

from mikata.data.images import load_image
from mikata.errors import ImageDecodeError
from mikata.models.handle import ModelHandle


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, int, float]] = field(default_factory=list)  # (class name, class id, probability)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": n, "id": i, "probability": p} for n, i, p in self.top]}

    def _repr_html_(self) -> str:
        return Predictions([self])._repr_html_()


class Predictions(list):
    """The ``Prediction`` list ``predict`` returns; Jupyter shows it as a table: a thumbnail of each
    image, its file name and its top classes with their probabilities (or why it could not be read)."""

    MAX_SHOWN = 50

    def _repr_html_(self) -> str:
        from mikata.notebook import STYLE, Raw, esc, img_tag, table_html

        rows = []
        for p in self[:self.MAX_SHOWN]:
            name = os.path.basename(p.path)
            if p.error is not None:
                rows.append([Raw(""), name, Raw(f'<span style="color:#b00">{esc(p.error)}</span>')])
                continue
            try:
                thumb = img_tag(load_image(p.path), alt=name, side=64)
            except (ImageDecodeError, OSError, MemoryError):  # changed since predict read it: no thumbnail
                thumb = Raw("")
            top = "<br>".join(f"{esc(n)} {prob:.3f}" for n, _, prob in p.top)
            rows.append([thumb, name, Raw(top)])
        more = f"<div>... {len(self) - self.MAX_SHOWN} more</div>" if len(self) > self.MAX_SHOWN else ""
        return f"<div>{STYLE}{table_html(['image', 'file', 'top classes (probability)'], rows)}{more}</div>"


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict(
    handle: ModelHandle,
    paths: Iterable[str | os.PathLike],
    top: int = 5,
    batch_size: int = 32,
) -> Predictions:
    """One ``Prediction`` per path, in order (a list that shows itself as a table in Jupyter);
    undecodable files carry ``error`` instead of ``top``.

    Every file is decoded and preprocessed on its own: a file that fails either way (corrupt, or a
    65000x1 strip whose resize would need gigabytes) gets its ``error``; the others still get results.

    Runs on ``handle.device`` at ``handle.precision`` (bf16 autocast on a capable GPU under "auto").

    Example:
        >>> found = mikata.predict(handle, ["chelsea.png", "coffee.png"], top=3)
        >>> [(name, round(p, 2)) for name, _, p in found[0].top]
        [('tiger cat', 0.39), ('Egyptian cat', 0.36), ('tabby', 0.17)]
        >>> found[1].top[0][0]
        'espresso'
    """
    paths = [str(p) for p in paths]
    top = max(1, min(top, handle.num_classes))
    mode = handle.mode
    results = Predictions()
    for chunk in _chunks(paths, batch_size):
        good, inputs, batch = [], [], [Prediction(p) for p in chunk]
        for pred in batch:
            try:
                inputs.append(handle.preprocess([load_image(pred.path, mode=mode)])[0])  # (C, H, W)
                good.append(pred)
            except ImageDecodeError as e:
                pred.error = e.reason
            except MemoryError:  # a per-image failure stays one image's error
                pred.error = "out of memory while preprocessing this image"
        if inputs:
            x = torch.stack(inputs).to(handle.device, non_blocking=True)  # (n, C, H, W)
            with torch.inference_mode(), handle.autocast():
                probs = handle.model(x).float().softmax(dim=1)  # (n, K)
            values, ids = probs.topk(top, dim=1)
            for pred, v, i in zip(good, values.cpu().tolist(), ids.cpu().tolist()):
                pred.top = [(handle.class_names[c], c, p) for c, p in zip(i, v)]
        results.extend(batch)
    return results
