"""The training-progress figure: loss and accuracy per epoch, train and validation.

Example:
    >>> plot_history({"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
    ...               "train_accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}, "progress.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path


def plot_history(history: dict[str, list[float]], path: str | os.PathLike, title: str = "",
                 best_epoch: int | None = None) -> Path:
    """Write ``history_figure`` as a PNG and return its path."""
    fig = history_figure(history, title, best_epoch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def history_figure(history: dict[str, list[float]], title: str = "", best_epoch: int | None = None):
    """The two-panel matplotlib Figure (loss, accuracy per epoch, train and validation).

    ``best_epoch`` (1-based): the epoch whose weights were kept (the best validation accuracy): a
    dashed line and a ring on its validation points mark it in both panels, so a reader sees which
    point of the curves the checkpoint is, not just the last one.
    """
    from mikata.notebook import notebook_figure  # no pyplot: no global figure state, no GUI backend

    fig = notebook_figure(figsize=(9, 3.6), dpi=100)
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("cross-entropy loss", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = history.get(f"{split}_{metric}", [])
            ax.plot(range(1, len(values) + 1), values, style, markersize=3, label=split)
        val = history.get(f"val_{metric}", [])
        if best_epoch and 1 <= best_epoch <= len(val):
            ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1,
                       label=f"kept: epoch {best_epoch}")
            ax.plot([best_epoch], [val[best_epoch - 1]], "o", markersize=9, markerfacecolor="none",
                    markeredgecolor="tab:green", markeredgewidth=1.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if metric == "accuracy":
            ax.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
