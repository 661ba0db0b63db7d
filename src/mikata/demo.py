"""``mikata demo``: the whole job on real data and a real pretrained model, end to end.

Each step is a call into the library, the same one the corresponding command makes, so the demo
doubles as a tour of the API. Outputs go under ``out_dir`` and are listed at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("mikata.demo")


@dataclass
class DemoResult:
    outputs: list[tuple[str, Path]] = field(default_factory=list)  # (what, path)
    facts: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


def shipped_photos(folder: Path) -> dict[str, Path]:
    """Real photos that installed packages ship (scikit-image, scikit-learn), saved as PNG files."""
    import sklearn.datasets
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket()}
    out = {}
    for name, arr in arrays.items():
        out[name] = folder / f"{name}.png"
        if not out[name].exists():
            Image.fromarray(arr).save(out[name])
    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    out["china"] = china
    return out


def run_demo(out_dir: str | Path = "mikata-demo", quick: bool = False) -> DemoResult:
    from mikata.models import load_model
    from mikata.predict import predict

    start = time.perf_counter()
    out = Path(out_dir)
    result = DemoResult()
    photos = shipped_photos(out / "photos")

    log.info("== 1. The built-in ImageNet model (EfficientNet-Lite0, real weights) on shipped photos")
    imagenet = load_model("efficientnet-lite0")
    for pred in predict(imagenet, list(photos.values()), top=3):
        log.info("  %-12s %s", Path(pred.path).stem,
                 ", ".join(f"{name} {p:.0%}" for name, _, p in pred.top))
        result.facts[f"top1:{Path(pred.path).stem}"] = pred.top[0][0]
    result.outputs.append(("photos used", out / "photos"))

    result.seconds = time.perf_counter() - start
    return result
