"""The demo's training step: EfficientNet-Lite0 (ImageNet weights) fine-tuned on Fashion-MNIST.

The defaults are tuned for a 2-core CPU: 64-pixel inputs (Fashion-MNIST is 28 px anyway), the
layers before ``blocks.9`` frozen and computed once per image, 500 images per class, 6 epochs,
one torch thread, cosine learning-rate decay. Measured on a busy shared 2-core machine (load 6-8,
so pessimistic): 110-185 s including writing the PNGs, test accuracy 0.868-0.879 on the held-out
15% (750 images). At load 13-19 the whole call took 154 s of CPU time (201 s before the depthwise
weight gradients of ``training.depthwise``), test accuracy 0.884 (0.888 before). A second call
reuses the checkpoint (well under a second).

Example:
    >>> path, accuracy, seconds = train_demo_model("mikata-demo/")     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mikata.data.idx import write_fashion_mnist

log = logging.getLogger(__name__)

DEMO_SETTINGS = dict(epochs=6, batch_size=32, lr=0.01, head_lr_factor=10.0, freeze_until="blocks.9",
                     augment=None, optimizer="sgd", split=(0.7, 0.15, 0.15), seed=0, input_size=64, threads=1)


def demo_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(dataset folder, checkpoint path)`` inside the demo's output folder."""
    out = Path(out_dir)
    return out / "fashion-mnist", out / "fashion-mnist-lite0.safetensors"


def train_demo_model(out_dir: str | os.PathLike, per_class: int = 500, progress: bool = True,
                     device: str | None = "cpu", **overrides) -> tuple[Path, float, float]:
    """Write the Fashion-MNIST subset, fine-tune lite0 on it; ``(checkpoint, test accuracy, seconds)``.

    If the checkpoint already exists and finished training, it is reused (seconds counts only the
    check) and the test accuracy is read from its metadata.
    """
    from mikata.models.loading import read_checkpoint_metadata
    from mikata.training.loop import state_path, train

    start = time.perf_counter()
    data, ckpt = demo_paths(out_dir)
    if ckpt.is_file() and not state_path(ckpt).exists():
        training = read_checkpoint_metadata(ckpt).get("training", {})
        if training.get("complete") and training.get("test_accuracy") is not None:
            log.info("reusing the trained model %s", ckpt)
            return ckpt, float(training["test_accuracy"]), time.perf_counter() - start
    write_fashion_mnist(data, per_class=per_class, seed=DEMO_SETTINGS["seed"])
    settings = {**DEMO_SETTINGS, **overrides}
    result = train(data, "efficientnet-lite0", ckpt, progress=progress, device=device, **settings)
    return ckpt, float(result.test_accuracy or 0.0), time.perf_counter() - start
