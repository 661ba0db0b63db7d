"""The dataset-issue registry: one ``IssueTypeSpec`` per issue type, read by everything that lists them.

``find_issues`` scores the types in registry order; ``mikata audit --help``, ``--thresholds`` checking,
the report's and the web app's issue sections and their map tiles read the specs. A new issue type is
one module with a ``score(ctx)`` function plus one ``register_issue_type(IssueTypeSpec(...))`` (the
built-in types are registered by ``mikata.analysis.issues``).

A score function gets an ``IssueContext``: the rows (``ctx.data``), the thresholds, and the pieces
several types share, each read or computed once on first use (``ctx.vectors("thumbs")``,
``ctx.pairs``, ``ctx.embedding_features``...). It returns a ``Scored`` (every row's score in [0, 1],
lower is worse; optionally its own flags and ranking) or ``None`` when the run lacks what the type
needs (``ctx.missing(kind)`` then says so once in the notes).

Example:
    >>> from mikata.analysis.issue_registry import issue_type, issue_type_names
    >>> issue_type("leak").default_threshold
    0.003
    >>> "outlier" in issue_type_names()
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, Sequence

import numpy as np

from mikata.errors import check_choices
from mikata.registry import Registry

if TYPE_CHECKING:
    from mikata.runs.data import RunData

# what a type may need from the scan; the note says what is missing when a run lacks it
VECTOR_NOTES = {
    "thumbs": "no thumbnails in this run (scanned before mikata stored them): near duplicates are not computed",
    "embed": "no embeddings in this run: outliers and embedding groups are not computed",
    "stats": "no pixel statistics in this run (scanned before mikata stored them): rescan into a new run "
             "for dark / light / blurry / low-information / size checks",
}
NEEDS = ("probs", "hash", "thumbs", "embed", "stats", "groups")


@dataclass
class Scored:
    """One type's result over the rows: ``score`` (N,) in [0, 1], lower is worse; ``flag`` (N,) bool when
    the type flags by its own rule (else: score below the threshold); ``order``: the flagged rows, most
    severe first, when the method ranks them itself."""

    score: np.ndarray
    flag: np.ndarray | None = None
    order: np.ndarray | None = None


@dataclass
class IssueContext:
    """What a score function reads: the rows, the thresholds, and shared pieces computed once."""

    data: "RunData"
    thresholds: Mapping[str, float | None]
    k: int = 10
    seed: int = 0
    groups: Sequence[str] | Mapping[str, str] | None = None
    min_group: int = 10
    label_ranking: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    scored: dict[str, Scored] = field(default_factory=dict)   # the types scored so far (registry order)
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # their flags, once thresholded
    shared: dict[str, Any] = field(default_factory=dict)       # pieces computed once (see ``once``)
    _missing: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.data)

    def threshold(self, name: str) -> float | None:
        return self.thresholds.get(name)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for, the same value after (shared between types)."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def vectors(self, kind: str) -> np.ndarray | None:
        """``(N, dim)`` float32 vectors of the rows (``embed``, ``stats``, ``thumbs``), None if the run has none."""
        def read() -> np.ndarray | None:
            from mikata.runs.store import RunStore

            d = self.data
            with RunStore.open(d.run_dir) as store:
                if kind not in store.dims() or not len(d):
                    return None
                got = np.asarray(store.vectors(kind)[d.vec_rows], np.float32)
            # damaged (NaN/inf) vectors, which `mikata check` names, count as zeros rather than failing every search
            return np.nan_to_num(got, nan=0.0, posinf=0.0, neginf=0.0)
        return self.once(f"vectors:{kind}", read)

    def missing(self, kind: str) -> None:
        """Say once in the notes that the run lacks ``kind`` (``VECTOR_NOTES``)."""
        if kind not in self._missing:
            self._missing.add(kind)
            self.notes.append(VECTOR_NOTES.get(kind, f"no {kind} in this run"))

    def pair(self, i: int, j: int, similarity: float, kind: str, replace: bool = False) -> None:
        """Record a duplicate pair of rows (``leak`` reads them): the first record of a pair wins unless ``replace``."""
        pairs: dict[tuple[int, int], tuple[float, str]] = self.once("pairs", dict)
        key = (min(int(i), int(j)), max(int(i), int(j)))
        if replace or key not in pairs:
            pairs[key] = (float(similarity), kind)

    @property
    def pairs(self) -> dict[tuple[int, int], tuple[float, str]]:
        return self.once("pairs", dict)


ScoreFn = Callable[[IssueContext], "Scored | None"]
RefineFn = Callable[[dict, list], None]


@dataclass(frozen=True)
class IssueTypeSpec:
    """One dataset-issue type.

    ``score``: the function scoring every row; ``default_threshold``: flagged below it (None: the type
    flags by its own rule, as confident learning does); ``needs``: what it reads from the scan (``NEEDS``);
    ``explained_by_maps``: a map of the prediction is evidence for it (the app draws Grad-CAM on its
    tiles); ``pairs``: its images come in duplicate pairs (the app lists them); ``refine``: run after
    every type is scored, to adjust this type's flags from the others' (``(types, notes)``).
    """

    name: str
    description: str
    score: ScoreFn
    default_threshold: float | None = None
    needs: tuple[str, ...] = ()
    explained_by_maps: bool = False
    pairs: bool = False
    refine: RefineFn | None = None
    definition: str = ""  # the score's definition in a line or two, for help text and documentation

    def __post_init__(self) -> None:
        for n in self.needs:
            check_choices("issue-type need", n, NEEDS)


_TYPES: Registry[IssueTypeSpec] = Registry("issue type")


def register_issue_type(spec: IssueTypeSpec, replace: bool = False) -> IssueTypeSpec:
    """Add ``spec`` (scored after every type registered before it); ``replace=True`` overrides a name."""
    return _TYPES.register(spec, replace)


def unregister_issue_type(name: str) -> None:
    _TYPES.unregister(name)


def registered_issue_type(spec: IssueTypeSpec) -> ContextManager[IssueTypeSpec]:
    """``spec`` registered for the block only (tests, notebooks trying a type)."""
    return _TYPES.registered(spec)


def issue_type(name: str) -> IssueTypeSpec:
    """The spec of type ``name``; an unknown name raises ``ChoiceError`` listing every type."""
    return _TYPES.get(name)


def issue_type_names(**flags: bool) -> tuple[str, ...]:
    """Type names in registry order, optionally only specs whose attributes equal ``flags``
    (``issue_type_names(explained_by_maps=True)``)."""
    return _TYPES.names(**flags)


def issue_type_specs() -> tuple[IssueTypeSpec, ...]:
    return _TYPES.specs()


def default_thresholds() -> dict[str, float | None]:
    """name -> default threshold of every registered type, in registry order."""
    return {s.name: s.default_threshold for s in _TYPES.specs()}
