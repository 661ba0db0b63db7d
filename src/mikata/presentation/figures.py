"""A plotImages-style figure: images with the predicted class (green if right, red if wrong),
its score, and the ground truth — the grid every error analysis starts from.

Example:
    >>> d = load_run("runs/digits")                                     # doctest: +SKIP
    >>> plot_images(d, confident_errors(d, n=16)).savefig("errors.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Sequence

from mikata.runs.data import RunData


def plot_images(d: RunData, rows: Sequence[int], cols: int | None = None, size: float = 1.8):
    """A matplotlib Figure with one panel per row index of ``d``; unreadable files show as blank."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from mikata.data.images import load_image
    from mikata.errors import ImageDecodeError
    from mikata.display import to_uint8_image

    n = max(1, len(rows))
    cols = cols or min(n, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * size, nrows * (size + 0.4)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, rows):
        try:
            img = to_uint8_image(np.asarray(load_image(d.paths[i], "RGB")))
        except ImageDecodeError:
            img = np.full((8, 8, 3), 255, np.uint8)
        ax.imshow(img)
        pred, label = int(d.preds[i]), int(d.labels[i])
        ax.set_title(f"{d.class_names[pred]} {d.probs[i, pred]:.2f}\n(true: {d.class_names[label]})",
                     color="green" if pred == label else "red", fontsize=8)
    fig.tight_layout()
    return fig
