"""Do the demo's maps beat a random order on more than one training seed?

For each seed: the demo's fine-tuning of lite0 on Fashion-MNIST (``DEMO_SETTINGS`` with that seed;
whole image, 64 px), a scan of that seed's test split, then the demo's faithfulness check: Grad-CAM at
the default layer on the same 8 seeded test images, steps 50, against a random order. Each fill is
reported: ``blur`` (the command's default) and the demo's ``deletion=road,insertion=mean``.

Run:  PYTHONPATH=src python benchmarks/bench_demo_seeds.py --seeds 0,1,2 --work /tmp/demo-seeds
      (about 3-8 min per seed on a 2-core CPU; a seed's trained model is reused on a second call)
"""

from __future__ import annotations

import argparse
from pathlib import Path

FILLS = ("blur", "deletion=road,insertion=mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default="/tmp/demo-seeds")
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    import torch

    from mikata.scanning.scan import scan
    from mikata.data.idx import write_fashion_mnist
    from mikata.demo.training import DEMO_SETTINGS, demo_paths
    from mikata.evaluation.scorecard import evaluate, load_images, sample_paths
    from mikata.models import load_model
    from mikata.training.loop import state_path, train

    torch.set_num_threads(1)
    print("| seed | test accuracy | layer | " + " | ".join(f"{f}: deletion / insertion vs random" for f in FILLS) + " |")
    print("|---" * (3 + len(FILLS)) + "|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = Path(args.work) / f"seed{seed}"
        data, ckpt = demo_paths(out)
        write_fashion_mnist(data, per_class=500, seed=DEMO_SETTINGS["seed"])
        settings = {**DEMO_SETTINGS, "seed": seed}
        if not ckpt.is_file() or state_path(ckpt).exists():
            train(data, "efficientnet-lite0", ckpt, progress=False, device="cpu", **settings)
        handle = load_model(str(ckpt), device="cpu")
        run = out / "test-run"
        scan(handle, data, run, split="test", fractions=settings["split"], seed=seed, batch_size=64, workers=0,
             progress=False)
        x, _ = load_images(handle, sample_paths(run, args.images))
        cells = []
        for fill in FILLS:
            t = evaluate(handle, x, ["gradcam"], checks=["faithfulness"], steps=50, fill=fill).card["table"]["gradcam"]
            cells.append(f"{t['deletion-vs-random']:+.3f} / {t['insertion-vs-random']:+.3f}")
        accuracy = handle.metadata.get("training", {}).get("test_accuracy")
        print(f"| {seed} | {accuracy if accuracy is None else round(float(accuracy), 3)} | {handle.default_layer} | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
