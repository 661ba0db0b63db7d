"""The method registry: one ``MethodSpec`` per attribution method, read by everything that lists methods.

``explain``, SmoothGrad's choice of base method, the map cache, the web app's grid, the report's titles
and the command line's choices all read these specs, so a new method is one module with a
``run(ctx)`` function plus one ``register(MethodSpec(...))`` (the built-in entries are in
``mikata.attribution.catalog``). The kinds follow Captum's families: ``layer`` (CAMs from a layer's
activations and gradients), ``gradient`` (one backward to the input, plain or with modified rules),
``perturbation`` (forwards of changed inputs), ``sampling`` (averages of gradients over samples),
``attention`` (transformer attention probabilities, recorded by the shared forward).

Example:
    >>> from mikata.attribution.registry import get, names
    >>> get("gradcam").title, get("gradcam").kind
    ('Grad-CAM', 'layer')
    >>> "saliency" in names(kind="gradient")
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ContextManager

import torch

from mikata.errors import check_choices
from mikata.registry import Registry

if TYPE_CHECKING:
    from mikata.attribution.passes import Pass
    from mikata.models.handle import ModelHandle

KINDS = ("layer", "gradient", "perturbation", "sampling", "attention")
ATTENTION_NEEDS = ("", "probs", "grads")
BACKWARD_MODES = ("plain", "guided", "deconv")
REDUCTIONS = ("sum", "maxabs", "abssum")


@dataclass
class MethodContext:
    """What a method's ``run`` gets: the batch, its targets, the shared pass (when the spec asked for one)."""

    handle: "ModelHandle"
    x: torch.Tensor  # (N, C, H, W), preprocessed, detached
    ids: torch.Tensor  # (N, T) class ids, one column per target rank
    shared: "Pass | None"  # the shared forward/backwards (activation at ``layer``, gradients per mode)
    options: dict  # this method's options, ``reduce`` removed
    layer: str | None = None
    budget_mb: float = 1024.0
    progress: bool = False
    cache: dict = field(default_factory=dict)  # per ``explain`` call: methods that share samples keep them here


# run(ctx) -> (one raw map per target rank: (N, h, w) at a layer or (N, C, H, W) / (N, H, W) at the input,
#              extras for Attribution.info: a value, or a list with one value per target rank)
RunFn = Callable[[MethodContext], tuple[list[torch.Tensor], dict]]


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method and what it needs.

    ``backwards``: the shared pass's backwards it reads, ``(mode, "layer" | "input")`` with mode plain /
    guided / deconv; ``needs_layer``: a CAM layer is resolved (a bool, or a function of the options,
    for wrappers such as SmoothGrad); ``reduce``: how an ``(N, C, H, W)`` raw map becomes ``(N, H, W)``
    (or a function of the options); ``layer_resolution``: maps live at the layer's resolution (shown
    unsaturated); ``grid``: fast enough for a grid of ~120 tiles in the web app; ``signed``: the map's
    sign means something, so it is drawn in a diverging colormap centred on zero (a bool, or a function
    of the options, for wrappers such as SmoothGrad: see ``signed_map``); ``rectifiers``: defined only for ReLU-like networks (refused on others).
    """

    name: str
    title: str
    kind: str
    run: RunFn
    backwards: tuple[tuple[str, str], ...] = ()
    needs_layer: bool | Callable[[dict], bool] = False
    reduce: str | Callable[[dict], str] = "sum"
    layer_resolution: bool = False
    grid: bool = False
    signed: bool | Callable[[dict], bool] = False
    rectifiers: bool = False
    summary: str = ""
    attention: str = ""  # "probs": the shared forward records attention; "grads": also their gradients per target


    def __post_init__(self) -> None:
        check_choices("method kind", self.kind, KINDS)
        for mode, where in self.backwards:
            check_choices("backward mode", mode, BACKWARD_MODES)
            check_choices("backward target", where, ("layer", "input"))
        if isinstance(self.reduce, str):
            check_choices("channel reduction", self.reduce, REDUCTIONS)
        check_choices("attention need", self.attention, ATTENTION_NEEDS)

    def layer_needed(self, options: dict | None = None) -> bool:
        """Whether this call (with ``options``) needs a CAM layer."""
        return self.needs_layer(options or {}) if callable(self.needs_layer) else bool(self.needs_layer)

    def is_signed(self, options: dict | None = None) -> bool:
        """Whether this call's maps (with ``options``) are signed (drawn diverging around zero); a
        ``reduce`` option other than "sum" (maxabs, abssum) makes any map a magnitude."""
        if (options or {}).get("reduce", "sum") != "sum":
            return False
        return self.signed(options or {}) if callable(self.signed) else bool(self.signed)

    def reduction(self, options: dict | None = None) -> str:
        """The channel reduction for this call: ``options["reduce"]`` wins over the spec's."""
        options = options or {}
        if "reduce" in options:
            return options["reduce"]
        return self.reduce(options) if callable(self.reduce) else self.reduce

    @property
    def uses_shared(self) -> bool:
        """Whether the method reads the shared pass (so its timing includes a share of it)."""
        return bool(self.backwards) or self.layer_needed({}) or bool(self.attention)

    def modes(self) -> dict[str, tuple[str, ...]]:
        """``backwards`` as ``gradient_pass``'s ``modes`` argument."""
        out: dict[str, list[str]] = {}
        for mode, where in self.backwards:
            out.setdefault(mode, []).append(where)
        return {k: tuple(sorted(v)) for k, v in out.items()}


_METHODS: Registry[MethodSpec] = Registry("method")  # the built-in methods are added by ``attribution.catalog``
# when ``mikata.attribution`` is imported (it always is before this module: it is the package's own)


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (``replace=True`` to override a method of the same name)."""
    return _METHODS.register(spec, replace)


def unregister(name: str) -> None:
    """Remove a method (a plugin's, or a test's toy method)."""
    _METHODS.unregister(name)


def registered(spec: MethodSpec) -> ContextManager[MethodSpec]:
    """``spec`` registered for the block only (tests, notebooks trying a method)."""
    return _METHODS.registered(spec)


def get(name: str) -> MethodSpec:
    """The spec of method ``name``; an unknown name raises ``ChoiceError`` listing every method."""
    return _METHODS.get(name)


def names(kind: str | None = None, **flags: bool) -> tuple[str, ...]:
    """Method names in registry order, optionally only one ``kind`` and specs whose attributes equal
    ``flags`` (e.g. ``names(grid=True)``, ``names(layer_resolution=True)``)."""
    return _METHODS.names(**flags) if kind is None else _METHODS.names(kind=kind, **flags)


def signed_map(name: str, options: dict | None = None) -> bool:
    """Whether method ``name``'s map (with ``options``) is signed: every picture of a map asks this
    (``mikata.display.map_scale`` then draws it diverging around a white zero, or sequential from 0)."""
    return get(name).is_signed(options)


def titles() -> dict[str, str]:
    """name -> display title for every method (report headings, app menus)."""
    return {s.name: s.title for s in _METHODS.specs()}


def method_listing() -> str:
    """One line per method (name first, then title, kind and what it is), for ``--methods list``."""
    width = max(len(s.name) for s in _METHODS.specs())
    return "\n".join(f"{s.name:<{width}}  {s.title} ({s.kind}){': ' + s.summary if s.summary else ''}"
                     for s in _METHODS.specs())
