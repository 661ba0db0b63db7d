"""A contact sheet of a run's concepts, to look at: per concept one row of its exemplars, each drawn as
the whole image (enlarged) with the exemplar box in red and the concept's heatmap beside it.

    PYTHONPATH=src python benchmarks/concepts_sheet.py RUN --classes Shirt,T-shirt_top --out sheet.png [--scale 4]

The run must already have its concepts (``mikata concepts RUN``). One sheet per call; the title of each
row (concept, importance, presence, flip rate, shortcut flag) is printed to stdout in row order, since
the sheet itself carries no text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def sheet(run: Path, classes: list[str], scale: int = 4, model: str | None = None) -> tuple[np.ndarray, list[str]]:
    from PIL import Image, ImageDraw

    from mikata.concepts import concept_heatmap, load_atlas

    atlas = load_atlas(run)
    if atlas is None:
        raise SystemExit(f"{run} has no current concepts: run `mikata concepts {run}` first")
    data = atlas.to_json()
    rows, titles = [], []
    for cls in classes:
        for c in sorted(data["classes"][cls], key=lambda c: -c["importance"]):
            tiles = []
            for e in c["exemplars"]:
                img = Image.open(e["path"]).convert("RGB")
                w, h = img.size
                big = img.resize((w * scale, h * scale), Image.NEAREST)
                draw = ImageDraw.Draw(big)
                x0, y0, x1, y1 = e["box"]
                draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=(255, 0, 0), width=2)
                heat = np.asarray(concept_heatmap(run, e["id"], c["concept"], model=model), np.float32)
                heat = np.clip(heat, 0, None) / max(float(heat.max()), 1e-12)
                grey = np.asarray(img.convert("L"), np.float32) / 255
                over = np.stack([np.maximum(grey * 0.5, heat), grey * 0.5, grey * 0.5], -1)
                over_img = Image.fromarray((over * 255).astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
                tiles += [np.asarray(big), np.asarray(over_img), np.full((h * scale, 4, 3), 255, np.uint8)]
            if tiles:
                rows.append(np.concatenate(tiles, 1))
                d = c["deletion"]
                titles.append(f"{c['concept']}: importance {c['importance']:.2f}, presence {c['presence']:.2f}, "
                              f"area {c['area']:.2f}, center {c['location']['center']}, flip {d['flip_rate']:.2f}, "
                              f"shortcut {c['shortcut']}")
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, 0), titles


def main() -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    img, titles = sheet(args.run, args.classes.split(","), args.scale, args.model)
    Image.fromarray(img).save(args.out)
    for i, t in enumerate(titles):
        print(f"row {i}: {t}")


if __name__ == "__main__":
    main()
