"""The evaluation-check registry: one ``CheckSpec`` per scorecard check, read by everything that lists them.

``scorecard.evaluate`` runs the checks asked for in registry order; ``mikata evaluate --checks``, its
help text, the scorecard's metric list and pass columns, and the report's and web app's scorecard
tables read the specs. A new check is one module with a ``run(ctx)`` function plus one
``register_check(CheckSpec(...))`` (the built-in checks are in ``mikata.evaluation.checks``).

A check's ``run`` gets a ``CheckContext``: the model, the images, the targets, every method's
original maps, the options, and ``ctx.part(method, compute)``, which saves a finished part (one
method's result) so an interrupted evaluation resumes (``evaluation.parts``). It writes its metrics
into ``ctx.table[method]`` and its pass/fail verdicts into ``ctx.passes[method]``.

Example:
    >>> from mikata.evaluation.check_registry import check_spec, check_names
    >>> [m.name for m in check_spec("stability").metrics]
    ['max-sensitivity']
    >>> "faithfulness" in check_names()
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import torch

from mikata.errors import check_choices
from mikata.registry import Registry

if TYPE_CHECKING:
    from mikata.models.handle import ModelHandle


@dataclass(frozen=True)
class MetricSpec:
    """One number of the scorecard: its name, which way is better ("lower" / "higher"), what it is."""

    name: str
    better: str
    description: str

    def __post_init__(self) -> None:
        check_choices("metric direction", self.better, ("lower", "higher"))


@dataclass
class CheckContext:
    """What a check's ``run`` reads and writes."""

    handle: "ModelHandle"
    x: torch.Tensor                     # (N, C, H, W) preprocessed images
    ids: torch.Tensor                   # (N,) the target class of each image
    base_probs: torch.Tensor            # (N,) the target's probability on the intact image
    methods: list[str]
    original: dict[str, torch.Tensor]   # method -> (N, H, W) the maps every check compares against
    options: dict | None                # per-method attribution options
    layer: str | None
    settings: dict[str, Any]            # this check's settings (steps, seed, ...): its saved parts depend on them
    masks: torch.Tensor | None = None   # (N, H, W) bool object pixels, when given
    budget_mb: float = 1024.0
    progress: bool = False
    table: dict[str, dict[str, float | None]] = field(default_factory=dict)  # method -> metric -> value
    passes: dict[str, dict[str, bool]] = field(default_factory=dict)         # method -> verdict -> passed
    extra: dict[str, Any] = field(default_factory=dict)                       # scorecard entries beyond the table
    arrays: dict[str, Any] = field(default_factory=dict)                      # for figures (curves, cascade)
    part: Callable[[str, Callable[[], dict]], dict] = lambda method, compute: compute()

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def note(self, text: str) -> None:
        """A line for the scorecard's notes."""
        self.extra.setdefault("notes", []).append(text)


RunFn = Callable[[CheckContext], None]


@dataclass(frozen=True)
class CheckSpec:
    """One evaluation check.

    ``summary``: what it computes, in a line; ``metrics``: the numbers it adds to the table;
    ``verdicts``: the pass/fail columns it adds, each with its rule in words; ``run``: the check;
    ``settings``: which of ``evaluate``'s options it depends on (its saved parts are keyed by them);
    ``parts``: the names of its saved parts for a list of methods (default: one per method; None
    entries are not saved: the check is cheap); ``needs_masks``: skipped without boxes or masks;
    ``skip``: why the check cannot tell anything on a model (e.g. random-logit on two classes), or None:
    a check with a reason is left out of the card, and the reason is its note.
    """

    name: str
    summary: str
    metrics: tuple[MetricSpec, ...]
    run: RunFn
    verdicts: tuple[tuple[str, str], ...] = ()
    settings: tuple[str, ...] = ()
    parts: Callable[[Sequence[str]], list[str]] | None = list
    needs_masks: bool = False
    skip: Callable[["ModelHandle"], str | None] | None = None


_CHECKS: Registry[CheckSpec] = Registry("check")


def register_check(spec: CheckSpec, replace: bool = False) -> CheckSpec:
    """Add ``spec`` (run after every check registered before it); ``replace=True`` overrides a name."""
    return _CHECKS.register(spec, replace)


def unregister_check(name: str) -> None:
    _CHECKS.unregister(name)


def registered_check(spec: CheckSpec) -> ContextManager[CheckSpec]:
    """``spec`` registered for the block only (tests, notebooks trying a check)."""
    return _CHECKS.registered(spec)


def check_spec(name: str) -> CheckSpec:
    """The spec of check ``name``; an unknown name raises ``ChoiceError`` listing every check."""
    return _CHECKS.get(name)


def check_names() -> tuple[str, ...]:
    return _CHECKS.names()


def check_specs() -> tuple[CheckSpec, ...]:
    return _CHECKS.specs()


def metric_specs(checks: Sequence[str] | None = None) -> list[MetricSpec]:
    """The metrics of ``checks`` (default every check), in registry order."""
    wanted = set(_CHECKS.names()) if checks is None else set(checks)
    return [m for s in _CHECKS.specs() if s.name in wanted for m in s.metrics]


def check_listing() -> str:
    """One line per check with its metrics, for help text."""
    return "; ".join(f"{s.name} ({', '.join(m.name for m in s.metrics)})" for s in _CHECKS.specs())
