"""``Registry[T]``: name -> spec, in registration order, for the plug-in tables of mikata.

Attribution methods (``attribution.registry``), dataset-issue types (``analysis.issue_registry``)
and evaluation checks (``evaluation.check_registry``) are each one of these: a spec is a frozen
dataclass with a ``name``; registering a taken name is refused unless ``replace=True``; an unknown
name raises ``ChoiceError`` listing every registered one; ``names(**flags)`` filters on the specs'
attributes. Tables are read at call time, so a spec registered later shows everywhere.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Colour:
    ...     name: str
    ...     warm: bool = False
    >>> colours = Registry[Colour]("colour")
    >>> _ = colours.register(Colour("red", warm=True)); _ = colours.register(Colour("blue"))
    >>> colours.names(warm=True), colours.get("blue")
    (('red',), Colour(name='blue', warm=False))
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Generic, Iterator, Protocol, TypeVar

from mikata.errors import check_choices


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Specs by name, in registration order; ``kind`` names a spec in messages ("method", "check")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._specs: dict[str, T] = {}

    def register(self, spec: T, replace: bool = False) -> T:
        """Add ``spec`` after every spec registered before it; ``replace=True`` overrides its name."""
        if spec.name in self._specs and not replace:
            raise ValueError(f"{self.kind} {spec.name!r} is already registered; pass replace=True to override it")
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove a spec (a plug-in's, or a test's toy one); an unknown name is no error."""
        self._specs.pop(name, None)

    @contextmanager
    def registered(self, spec: T) -> Iterator[T]:
        """``spec`` registered for the block only (tests, notebooks trying one)."""
        self.register(spec)
        try:
            yield spec
        finally:
            self.unregister(spec.name)

    def get(self, name: str) -> T:
        """The spec of ``name``; an unknown name raises ``ChoiceError`` listing every registered one."""
        check_choices(self.kind, name, list(self._specs))
        return self._specs[name]

    def names(self, **flags: object) -> tuple[str, ...]:
        """Names in registration order, only of specs whose attributes equal ``flags`` (e.g. ``grid=True``)."""
        return tuple(s.name for s in self._specs.values() if all(getattr(s, k) == v for k, v in flags.items()))

    def specs(self) -> tuple[T, ...]:
        return tuple(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)
