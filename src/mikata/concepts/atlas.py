"""``Atlas``: a run's stored concepts, and the reads every surface makes of them.

``load_atlas(run)`` gives the atlas when it is current (its key matches the run's version, the model's
weights hash and the options it records) and None when missing or stale. ``Atlas.to_json()`` is the
stable document of ``mikata concepts --json``; the per-class arrays load on demand.

Example:
    >>> atlas = load_atlas("runs/fashion")                                  # doctest: +SKIP
    >>> atlas.to_json()["classes"]["Coat"][0]["importance"]                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mikata.concepts import store as S
from mikata.errors import ChoiceError, MikataError

log = logging.getLogger(__name__)
PUBLIC = ("layer", "split", "classes", "strategies", "errors", "slices", "residual", "off_center", "deletion_direction",
          "class_findings", "tcav")


@dataclass
class Atlas:
    run_dir: Path
    doc: dict
    _arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def layer(self) -> str:
        return str(self.doc["layer"])

    @property
    def split(self) -> str | None:
        """The split whose rows the concepts were computed on; None: the whole run (every split)."""
        got = self.doc.get("split")
        return got if isinstance(got, str) else None

    @property
    def class_names(self) -> list[str]:
        """The classes that have concepts, in class order."""
        return list(self.doc["classes"])

    def to_json(self) -> dict:
        """The stable document: ``layer``, ``classes``, ``strategies``, ``errors``, ``slices``, ``residual``
        (per class: the share of the evidence the factorization does not explain), ``off_center`` (per class,
        per concept: the mean distance of its center from the image's center, over the images that have it),
        ``deletion_direction`` (per class, per concept: the second deletion test, the concept's direction removed
        from the layer's activations: ``flip_rate``, ``mean_drop``, ``images``), ``class_findings`` (per class, the
        class-level tests of ``classtests``: ``{"test": "context" | "photometric", "deletion": {...}, "shortcut":
        bool, "concepts": [names], "evidence": str}``) and ``tcav`` when concepts were defined."""
        return {k: self.doc[k] for k in PUBLIC if k in self.doc}

    def class_id(self, cls: str | int) -> int:
        ids = self.doc["class_ids"]
        if isinstance(cls, (int, np.integer)) and int(cls) in ids.values():
            return int(cls)
        lower = {n.lower(): i for n, i in ids.items()}
        if str(cls).lower() in lower:
            return int(lower[str(cls).lower()])
        raise ChoiceError("class with concepts", cls, list(ids), hint="`mikata concepts RUN --classes ...` adds one")

    def concept(self, name: str) -> tuple[int, int, dict]:
        """``"Coat/2"`` -> (class id, concept index, its entry); a clear error for an unknown concept."""
        cls, _, k = str(name).rpartition("/")
        if not cls or not k.isdigit():
            raise MikataError(f"concept {name!r}: name it CLASS/k, e.g. {self.class_names[0]}/0")
        c = self.class_id(cls)
        entries = self.doc["classes"][self._name(c)]
        if not 0 <= int(k) < len(entries):
            raise ChoiceError("concept", name, [e["concept"] for e in entries])
        return c, int(k), entries[int(k)]

    def _name(self, c: int) -> str:
        return next(n for n, i in self.doc["class_ids"].items() if i == c)

    def arrays(self, cls: str | int) -> dict[str, np.ndarray]:
        """The class's stored arrays (``store.ARRAY_NAMES``)."""
        c = self.class_id(cls)
        if c not in self._arrays:
            got = S.read_arrays(S.class_paths(self.run_dir, c)[1])
            if got is None:
                raise MikataError(f"{S.class_paths(self.run_dir, c)[1]} is missing or damaged; run "
                                  f"`mikata concepts {self.run_dir}` again")
            self._arrays[c] = got
        return self._arrays[c]

    def present(self, cls: str | int) -> np.ndarray:
        """``(n, k)`` bool over the class's sampled images: which has which concept (``describe.present``)."""
        from mikata.concepts.describe import present

        a = self.arrays(cls)
        return present(a["strength"], a["thresholds"])

    @property
    def skipped(self) -> int:
        """Sampled images that could not be decoded any more and were left out (each was logged)."""
        return int(sum(self.doc.get("skipped", {}).values()))

    def shortcuts(self) -> list[dict]:
        """Suspected shortcuts, most important first: ``{"class", "concept", "importance", "flip_rate",
        "mean_drop", "evidence"}``; then the class-level findings (``class_findings``: a class resting on its
        context or its intensities), with ``"concept": None``, ``"test"`` and ``"importance": None``."""
        out = [{"class": cls, "concept": c["concept"], "importance": c["importance"],
                "flip_rate": c["deletion"]["flip_rate"], "mean_drop": c["deletion"]["mean_drop"],
                "evidence": c["evidence"]}
               for cls, entries in self.doc["classes"].items() for c in entries if c["shortcut"]]
        out.sort(key=lambda s: -s["importance"])
        return out + self.class_shortcuts()

    def class_shortcuts(self) -> list[dict]:
        """The class-level findings flagged as suspected shortcuts, largest flip rate first."""
        out = [{"class": cls, "concept": None, "test": f["test"], "importance": None,
                "flip_rate": f["deletion"]["flip_rate"], "mean_drop": f["deletion"]["mean_drop"],
                "concepts": list(f.get("concepts", [])), "evidence": f["evidence"]}
               for cls, found in self.doc.get("class_findings", {}).items() for f in found if f["shortcut"]]
        return sorted(out, key=lambda s: -s["flip_rate"])


def current_key(run_dir: str | os.PathLike, options: dict) -> str:
    from mikata.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        return S.make_key(store.version(), store.manifest["identity"].get("weights_sha1"), options)


def load_atlas(run_dir: str | os.PathLike) -> Atlas | None:
    """The run's atlas, or None when it was never computed or is stale (the run was rescanned or grew)."""
    doc = S.read_json(S.folder(run_dir) / "atlas.json")
    if doc is None:
        return None
    try:
        if doc.get("format") != S.FORMAT or doc["key"] != current_key(run_dir, doc["options"]):
            return None
        _check(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        log.warning("ignoring unreadable %s: %s", S.folder(run_dir) / "atlas.json", e)
        return None
    return Atlas(Path(run_dir), doc)


def _check(doc: dict) -> None:
    """The fields the readers rely on have their types (the file is data: a hand-edited one must not crash a page)."""
    if not isinstance(doc["layer"], str) or not isinstance(doc["classes"], dict):
        raise ValueError("layer/classes have the wrong type")
    for cls, entries in doc["classes"].items():
        if not isinstance(entries, list) or cls not in doc["class_ids"]:
            raise ValueError(f"class {cls!r} is malformed")
        for e in entries:
            float(e["importance"]), float(e["presence"]), float(e["area"]), bool(e["shortcut"]), str(e["evidence"])
            [int(x["id"]) for x in e["exemplars"]]
            [float(v) for v in e["location"]["center"]]
    for cls, found in doc.get("class_findings", {}).items():
        if cls not in doc["class_ids"] or not isinstance(found, list):
            raise ValueError(f"class findings of {cls!r} are malformed")
        for f in found:
            str(f["test"]), bool(f["shortcut"]), str(f["evidence"])
            float(f["deletion"]["flip_rate"]), float(f["deletion"]["mean_drop"]), int(f["deletion"]["images"])


def shortcuts_section(run_dir: str | os.PathLike) -> dict:
    """``{"shortcuts": Atlas.shortcuts()}`` for ``mikata audit`` when the run has a current atlas (of the whole
    run, every split), else ``{}``."""
    atlas = load_atlas(run_dir)
    return {} if atlas is None else {"shortcuts": atlas.shortcuts()}


def format_shortcuts(result: dict, max_listed: int | None = None) -> list[str]:
    """The audit's text lines for its ``shortcuts`` (none when the run has no concepts)."""
    if "shortcuts" not in result:
        return []
    items = result["shortcuts"]
    lines = [f"\nsuspected shortcuts (mikata concepts; evidence for a person to judge, not a verdict): {len(items)}"]
    return lines + [f"  {s['evidence']}" for s in (items[:max_listed] if max_listed else items)]
