"""What a training run will cost, known before it starts: a short timed probe, scaled up.

``mikata train`` times, on one batch and before any long pass: the frozen layers' forward (what
caching their output costs per image) and one training step of the layers that learn (forward +
backward). ``train_cost`` scales them to the run (every decoded image cached once; per epoch every
training image stepped and every validation image forwarded, a forward counted as a third of a
step), and ``train_message`` prints the total with cheaper settings when it is long (over ``LONG``).

Example:
    >>> c = train_cost(cached=2000, cache_per_image=0.2, train=1400, step_per_image=0.3, val=300, epochs=15)
    >>> round(c.cache), round(c.epoch), round(c.total)
    (400, 450, 7150)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

LONG = 600.0  # seconds: an estimate above this comes with cheaper settings
FORWARD_SHARE = 1 / 3  # a forward costs about a third of a forward + backward


@dataclass
class TrainCost:
    """Seconds: caching the frozen layers' output once (0 when not cached), one epoch, the epochs."""

    cache: float
    epoch: float
    epochs: int

    @property
    def total(self) -> float:
        return self.cache + self.epoch * self.epochs


def train_cost(cached: int, cache_per_image: float, train: int, step_per_image: float, val: int,
               epochs: int) -> TrainCost:
    """``cached`` images through the frozen layers once, then ``epochs`` of ``train`` steps and ``val`` forwards."""
    epoch = train * step_per_image + val * step_per_image * FORWARD_SHARE
    return TrainCost(cached * cache_per_image, epoch, epochs)


def train_suggestions(cost: TrainCost, input_size: int, epochs: int, freeze_until: str | None,
                      later_layers: Sequence[str] = ()) -> list[str]:
    """Cheaper settings, each with what it saves (largest first); empty when the estimate is not long.
    The work scales with the pixels, so ``--input-size s`` costs ``(s / input_size)^2`` of it."""
    from mikata.progress import format_seconds

    if cost.total <= LONG:
        return []
    out: list[tuple[float, str]] = []
    for size in (160, 128, 96, 64):
        if size < input_size:
            saved = cost.total * (1 - (size / input_size) ** 2)
            out.append((saved, f"--input-size {size} (about {(size / input_size) ** 2:.0%} of the pixels; saves "
                               f"~{format_seconds(saved)})"))
            break
    if later_layers:  # its saving is not measured: listed last
        now = f" (now {freeze_until})" if freeze_until else ""
        out.append((0.0, f"--freeze-until {later_layers[0]}{now}: fewer layers learn, so each epoch runs a smaller "
                         "part of the network"))
    fit = int((LONG - cost.cache) // cost.epoch) if cost.epoch > 0 else epochs
    if 1 <= fit < epochs:
        out.append((cost.epoch * (epochs - fit), f"--epochs {fit} (saves ~{format_seconds(cost.epoch * (epochs - fit))})"))
    return [text for _, text in sorted(out, key=lambda t: -t[0])]


def later_layers(net, freeze_until: str | None) -> list[str]:
    """Freeze points later than ``freeze_until``: its later siblings from halfway to the end (with none
    given, the second third of the network's longest block list, e.g. ``blocks.10`` of 16)."""
    from torch import nn

    if freeze_until:
        parent, _, last = freeze_until.rpartition(".")
        holder = net.get_submodule(parent) if parent else net
        names = [n for n, _ in holder.named_children()]
        if last not in names:
            return []
        after = names[names.index(last) + 1:-1] or []  # the last child usually holds the head: never freeze it
        pick = after[len(after) // 2:]
        return [f"{parent}.{n}" if parent else n for n in pick]
    lists = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) >= 3]
    if not lists:
        return []
    name, block = max(lists, key=lambda t: len(t[1]))
    children = [n for n, _ in block.named_children()]
    return [f"{name}.{c}" if name else c for c in children[2 * len(children) // 3:]]


def train_message(cost: TrainCost, cached: int, probe: int, suggestions: Sequence[str]) -> str:
    """The line printed before the long passes start."""
    from mikata.progress import format_seconds

    first = (f"caching the frozen layers' output {format_seconds(cost.cache)} ({cached:,} images), then "
             if cost.cache > 0 else "")
    line = (f"train: about {format_seconds(cost.total)} in all: {first}{format_seconds(cost.epoch)} per epoch x "
            f"{cost.epochs} epoch(s) (timed on {probe} images before starting)")
    if suggestions:
        line += f"; that is long: cheaper settings: {'; '.join(suggestions)}"
    return line
