"""``mikata demo``: the whole job end to end, on installed real data and a real pretrained model.

``run`` is the tour (it calls the library the way each command does, report included, so it sits
at the top layer with the CLI); ``training`` is its fine-tuning step (Fashion-MNIST, read by
``mikata.data.idx``, on EfficientNet-Lite0), which benchmarks call on their own.

Example:
    >>> from mikata.demo import run_demo
    >>> result = run_demo("mikata-demo", quick=True)          # doctest: +SKIP
"""

from mikata.demo.run import DemoResult, run_demo
from mikata.demo.training import DEMO_SETTINGS, demo_paths, train_demo_model

__all__ = ["DEMO_SETTINGS", "DemoResult", "demo_paths", "run_demo", "train_demo_model"]
