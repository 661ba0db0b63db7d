"""One forward pass that records the layers an objective reads and stops as soon as it has them.

Feature visualization of an early layer does not need the rest of the network: a forward hook
(registered through ``mikata.hooks.attached``, removed in ``finally``) raises once every wanted
layer has produced its output, so neither the forward nor the backward runs past it. Class-logit
objectives run the whole ``handle.model`` (which always returns pre-softmax logits).

Example:
    >>> with recording(handle, ["stem.conv"]) as run:       # doctest: +SKIP
    ...     acts = run(x)                                    # {"stem.conv": (N, 32, h, w)}
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch

from mikata.featurevis.objectives import INPUT, LOGITS
from mikata.hooks import attached, capture, get_layer
from mikata.models.handle import ModelHandle


class _Enough(Exception):
    """Raised inside the forward once every wanted layer has been recorded."""


@contextmanager
def recording(handle: ModelHandle, layers: Sequence[str]) -> Iterator[Callable[[torch.Tensor], dict]]:
    """Yield ``run(x) -> {layer: activation, LOGITS: logits?}`` with hooks live only in this block."""
    wanted = [name for name in dict.fromkeys(layers) if name not in (LOGITS, INPUT)]  # INPUT: the caller adds it
    need_logits = LOGITS in layers
    for name in wanted:
        get_layer(handle.net, name)  # an unknown name raises ChoiceError listing the valid ones

    with capture(handle.net, wanted, detach=False, layouts=handle.layouts_for(wanted)) as rec:
        def stop_when_done(module, args, out):
            if all(name in rec.activations for name in wanted):
                raise _Enough

        stops = [] if need_logits else [(get_layer(handle.net, n), "forward", stop_when_done) for n in wanted]
        with attached(stops):
            def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
                rec.activations.clear()
                acts: dict[str, torch.Tensor] = {}
                if need_logits:
                    acts[LOGITS] = handle.model(x)  # (N, K) pre-softmax
                else:
                    try:
                        handle.net(x)
                    except _Enough:
                        pass
                missing = [n for n in wanted if n not in rec.activations]
                if missing:
                    raise RuntimeError(f"layer(s) {missing} did not run in the forward pass; "
                                       "pick layers that the model's forward calls")
                acts.update(rec.activations)
                return acts

            yield run
