"""``ModelSource``: where a run's readers get the model for maps, in one object.

The model for a run's maps is a loaded ``ModelHandle``, or a spec the user typed (``--model``; code
specs allowed, they come from the user), or — with neither — the run's own recorded model (checked
against its weights hash, never code from a file), or on a cross-validation run each row's fold model.
``trust`` allows unpickling a spec the user typed; ``device`` is where it is loaded and run. The map
service, the notebook ``Run``, the web app, the report and ``mikata units`` all take one.

Example:
    >>> src = ModelSource.of("runs/model.safetensors", device="cuda")     # doctest: +SKIP
    >>> MapService("runs/a", source=src)                                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mikata.models.handle import ModelHandle


@dataclass(frozen=True)
class ModelSource:
    """``handle``: a loaded model (wins over everything); ``spec``: a model spec the user typed;
    ``trust``: may unpickle ``spec``; ``device``: where the model is loaded and maps computed;
    ``folds``: on a cross-validation run without ``handle``/``spec``, each row's maps come from the fold
    model that did not train on it.

    Example:
        >>> source = mikata.ModelSource.of("efficientnet-lite0")   # a spec you typed; loaded when a map needs it
        >>> source.spec, source.given
        ('efficientnet-lite0', True)
        >>> mikata.open_run("runs/a", model=source).map(1).shape
        (224, 224)
    """

    handle: "ModelHandle | None" = None
    spec: str | None = None
    trust: bool = False
    device: str | None = "cpu"
    folds: bool = True

    @classmethod
    def of(cls, model: "ModelHandle | str | ModelSource | None" = None, trust: bool = False,
           device: str | None = "cpu") -> "ModelSource":
        """A source from what a caller holds: a handle, a typed spec, a source already, or nothing (the
        run's own model)."""
        if isinstance(model, ModelSource):
            return model
        if model is None or isinstance(model, str):
            return cls(spec=model, trust=trust, device=device)
        return cls(handle=model, trust=trust, device=device)

    @property
    def given(self) -> bool:
        """Whether the user gave a model (a handle or a spec) instead of the run's own."""
        return self.handle is not None or self.spec is not None

    def on(self, device: str | None) -> "ModelSource":
        """The same source on another device."""
        return replace(self, device=device)
