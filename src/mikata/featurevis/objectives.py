"""What feature visualization maximizes: per-image scores computed from recorded activations.

An objective maps what one forward pass saw (layer activations by name, and the pre-softmax
logits when asked for) to a score per image, shape ``(N,)``. Scores are per image so that a batch
can render many units at once: image ``i`` optimizes unit ``i`` and, because the network runs in
eval mode, the gradient of the summed score reaching image ``i`` comes from its own term only.

Objectives compose by arithmetic: ``channel("blocks.5", 3) + 0.5 * diversity("blocks.5")``.

Example:
    >>> obj = channel("stem.conv", [0, 1, 2])       # three images, channel i on image i
    >>> obj.units, obj.layers
    (3, ('stem.conv',))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from mikata.errors import ChoiceError

LOGITS = "<logits>"  # the pseudo-layer name an objective uses to ask for pre-softmax logits
INPUT = "<input>"  # the pseudo-layer name for the image being optimized, (N, C, H, W) in [0, 1], before transforms
# which of the objective's images the batch holds, (n,) long: ``render`` drops an image once it has finished
# (its plateau), so a per-image objective picks the units of the remaining ones; absent: all of them
ROWS = "<rows>"


@dataclass(frozen=True)
class Objective:
    """A per-image score ``fn(acts) -> (N,)``; ``acts`` maps layer names (and ``LOGITS``) to tensors.

    ``layers`` are the layers it reads; ``units`` is how many images it wants in a batch (``None``:
    any number); ``labels`` name those images (channel index, class name) for grids and files.
    """

    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    layers: tuple[str, ...]
    name: str
    units: int | None = None
    labels: tuple[str, ...] | None = None

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(acts)

    @property
    def needs_logits(self) -> bool:
        return LOGITS in self.layers

    # ------------------------------------------------------------- arithmetic
    def _combine(self, other: "Objective | float", op: Callable, symbol: str) -> "Objective":
        if not isinstance(other, Objective):
            value = float(other)
            return Objective(lambda acts: op(self(acts), value), self.layers, f"({self.name} {symbol} {value:g})",
                             self.units, self.labels)
        if self.units is not None and other.units is not None and self.units != other.units:
            raise ValueError(f"cannot combine objectives for {self.units} and {other.units} images; "
                             "give both the same number of units")
        return Objective(lambda acts: op(self(acts), other(acts)), tuple(dict.fromkeys(self.layers + other.layers)),
                         f"({self.name} {symbol} {other.name})", self.units or other.units,
                         self.labels or other.labels)

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b, "+")

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b, "-")

    def __rsub__(self, other):
        return (-1.0 * self) + other

    def __mul__(self, other):
        if isinstance(other, Objective):
            raise TypeError("objectives multiply by numbers only; add them to combine")
        return self._combine(float(other), lambda a, b: a * b, "*")

    __rmul__ = __mul__

    def __neg__(self):
        return -1.0 * self


def _per_image_index(values: int | Sequence[int]) -> tuple[list[int], int | None]:
    """One unit for all images (``units=None``) or one unit per image."""
    if isinstance(values, (int,)) or hasattr(values, "__index__"):
        return [int(values)], None
    values = [int(v) for v in values]
    if not values:
        raise ValueError("give at least one unit")
    return values, len(values)


def _pick(ids: list[int], n: int, device: torch.device, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The unit of each of the batch's ``n`` images: ``ids[i]`` for image ``i``, or for the images ``rows``
    of the objective when the batch holds only those (``acts[ROWS]``)."""
    if len(ids) == 1:
        return torch.full((n,), ids[0], dtype=torch.long, device=device)
    if rows is not None:
        if len(rows) != n:
            raise ValueError(f"the batch has {n} images but names {len(rows)} of the objective's units")
        return torch.tensor(ids, dtype=torch.long)[rows.cpu()].to(device)
    if len(ids) != n:
        raise ValueError(f"this objective renders {len(ids)} units but the batch has {n} images")
    return torch.tensor(ids, dtype=torch.long, device=device)


def _check_channels(kind: str, layer: str, ids: list[int], count: int) -> None:
    bad = [c for c in ids if not 0 <= c < count]
    if bad:
        raise ChoiceError(kind, bad[0], [f"0..{count - 1}"],
                          hint=f"layer {layer!r} has {count} {kind}s")


def channel(layer: str, c: int | Sequence[int], rectify: bool = False) -> Objective:
    """Mean activation of channel ``c`` of ``layer``; a list renders channel ``c[i]`` on image ``i``.

    ``rectify`` averages the positive part only (what a following ReLU passes on). Use it for
    layers without an activation, such as a first conv: there the plain mean is linear in the
    image, so its maximum is a flat color and an edge filter (weights summing to ~0) gets no
    gradient at all; the rectified mean is maximized by textures of the filter's edges and colors.
    """
    ids, units = _per_image_index(c)

    def fn(acts):
        a = acts[layer]  # (N, C, h, w) or (N, C)
        a = a.clamp_min(0) if rectify else a
        _check_channels("channel", layer, ids, a.shape[1])
        means = a.flatten(2).mean(2) if a.dim() > 2 else a  # (N, C)
        return means.gather(1, _pick(ids, a.shape[0], a.device, acts.get(ROWS))[:, None])[:, 0]  # (N,)

    return Objective(fn, (layer,), f"channel({layer}, {c}{', rectified' if rectify else ''})", units, tuple(str(i) for i in ids) if units else None)


def neuron(layer: str, c: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``c`` at one spatial position ``(y, x)`` (the center when omitted)."""
    ids, units = _per_image_index(c)

    def fn(acts):
        a = acts[layer]  # (N, C, h, w)
        _check_channels("channel", layer, ids, a.shape[1])
        h, w = a.shape[-2:]
        yy = h // 2 if y is None else y
        xx = w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise ChoiceError("neuron position", (yy, xx), [f"y 0..{h - 1}, x 0..{w - 1}"],
                              hint=f"layer {layer!r} is {h}x{w} at this image size")
        rows = torch.arange(a.shape[0], device=a.device)
        return a[rows, _pick(ids, a.shape[0], a.device, acts.get(ROWS)), yy, xx]  # (N,)

    where = "center" if y is None else f"{y},{x}"
    return Objective(fn, (layer,), f"neuron({layer}, {c}, {where})", units,
                     tuple(f"{i}@{where}" for i in ids) if units else None)


def layer_energy(layer: str) -> Objective:
    """DeepDream: the mean squared activation of a whole layer (all channels, all positions)."""
    return Objective(lambda acts: acts[layer].pow(2).flatten(1).mean(1), (layer,), f"deepdream({layer})")


def class_logit(class_ids: int | Sequence[int], names: Sequence[str] | None = None) -> Objective:
    """The pre-softmax logit of a class (``handle.model`` strips any softmax); a list: one per image."""
    ids, units = _per_image_index(class_ids)

    def fn(acts):
        z = acts[LOGITS]  # (N, K)
        _check_channels("class id", "logits", ids, z.shape[1])
        return z[torch.arange(z.shape[0], device=z.device), _pick(ids, z.shape[0], z.device, acts.get(ROWS))]

    labels = tuple(names) if names is not None else tuple(str(i) for i in ids)
    return Objective(fn, (LOGITS,), f"logit({', '.join(labels)})", units, labels if units else None)


def diversity(layer: str) -> Objective:
    """Per image: minus its mean cosine similarity (of Gram matrices of ``layer``) to the others.

    Add it with a weight to render several different images of one unit (lucid's diversity term).
    """

    def fn(acts):
        a = acts[layer].flatten(2)  # (N, C, hw)
        n = a.shape[0]
        if n < 2:
            return a.new_zeros(n)
        gram = torch.nn.functional.normalize(torch.bmm(a, a.transpose(1, 2)).flatten(1), dim=1)  # (N, C*C)
        sim = gram @ gram.T  # (N, N)
        return -(sim.sum(1) - sim.diagonal()) / (n - 1)

    return Objective(fn, (layer,), f"diversity({layer})")
