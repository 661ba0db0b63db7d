"""The scorecard's figure: deletion and insertion curves (mean over images, random order dashed)
and the randomization cascade (mean Spearman and SSIM per stage, top layer first).

Example:
    >>> draw_evaluation(result, "evaluate/evaluate.png")                      # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path


def draw_evaluation(result, path: str | os.PathLike) -> Path | None:
    """Write the PNG; None when there is nothing to draw (no faithfulness and no cascade)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if result.curves:
        panels += ["deletion", "insertion"]
    if result.cascade is not None:
        panels += ["spearman", "ssim"]
    if not panels:
        return None
    cols = 2
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = result.card["methods"]
    for ax, panel in zip(axes.flat, panels):
        if panel in ("deletion", "insertion"):
            for i, name in enumerate([*methods, "random"]):
                c = result.curves[name][panel].mean(0).numpy()
                xs = [k / (len(c) - 1) for k in range(len(c))]
                auc = sum((c[k] + c[k + 1]) / 2 for k in range(len(c) - 1)) / (len(c) - 1)
                style = dict(color="black", linestyle="--") if name == "random" else dict(color=colors[i % len(colors)])
                base = (result.card.get("baselines") or {}).get(name)
                ax.plot(xs, c, label=f"{name}{f' ({base})' if base else ''} (AUC {auc:.3f})", **style)
            ax.set_xlabel(f"fraction of regions {'removed' if panel == 'deletion' else 'revealed'}")
            ax.set_ylabel("target class probability (mean)")
            from mikata.evaluation.faithfulness import mode_fills

            fill = mode_fills(result.card.get("settings", {}).get("fill", "blur"))[panel]
            ax.set_title(f"{panel}, regions filled with {fill} ({'lower' if panel == 'deletion' else 'higher'} "
                         "AUC is better)")
        else:
            cas = result.cascade
            values = cas.spearman if panel == "spearman" else cas.ssim
            for i, m in enumerate(methods):
                ys = [float(v.nanmean()) for v in values[m]]
                base = (result.card.get("baselines") or {}).get(m)
                ax.plot(range(len(ys)), ys, marker="o", color=colors[i % len(colors)],
                        label=f"{m} ({base})" if base else m)
            ax.set_xticks(range(len(cas.stages)))
            ax.set_xticklabels(cas.stages, rotation=35, ha="right", fontsize=7)
            ax.set_ylim(-0.1, 1.05)
            ax.set_xlabel("weights randomized down to (cumulative, top layer first)")
            ax.set_ylabel("Spearman rank correlation" if panel == "spearman" else "SSIM")
            ax.set_title(f"model randomization: {'Spearman' if panel == 'spearman' else 'SSIM'} with the original map")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    card = result.card
    fig.suptitle(f"{card['model']}: {card['images']} images, target {card['target']}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
