"""The finished parts of one ``evaluate``, saved as each completes, so an interrupted run resumes.

A full evaluate on real images can take an hour (Integrated Gradients x a randomization cascade x
noisy copies): losing it all to Ctrl-C or a closed laptop is not acceptable. Each unit of work —
one method's maps, or one (check, method) pair, plus the random order's curves — is written as
one small file under ``parts/`` as soon as it is done (written to a temporary name, then renamed:
a killed process leaves no half part). Rerunning the same command loads the finished parts and
computes only the rest.

A part is reused only when everything that shaped its numbers is the same: its key hashes the
model's weights (not just its name), the preprocessed images themselves (so a changed file, crop
or resize gives new parts), the target, layer, device type and precision, the method's options,
and the settings of its check (``--steps``/``--fill``/``--patch`` for faithfulness, ``--stages``
for the cascade, ``--samples``/``--radius`` for stability, the seed for all). Changing ``--stages``
recomputes the cascade and keeps the faithfulness parts.

Files hold tensors, lists, numbers and strings only, read with ``torch.load(weights_only=True)``:
a part file never runs code. A part that cannot be read is recomputed (with a warning).

Example:
    >>> store = PartStore("evaluate/parts", {"weights": "ab12", "images": "cd34"})   # doctest: +SKIP
    >>> store.load("maps", "gradcam") is None                                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FORMAT = 1  # bump when a part's contents change meaning


def tensor_digest(t: torch.Tensor) -> str:
    """sha1 of a tensor's shape, dtype and bytes (on the CPU): the identity of the images evaluated."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha1(f"{tuple(t.shape)} {t.dtype}".encode())
    h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


class PartStore:
    """Parts of one evaluation in ``folder``, keyed by ``common`` (what every part depends on) plus
    each part's own ``settings``. ``folder=None`` keeps nothing (a plain in-memory evaluate)."""

    def __init__(self, folder: str | os.PathLike | None, common: dict) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.common = common
        self.loaded: list[str] = []  # names of the parts found on disk, in order
        self.saved: list[str] = []

    def key(self, check: str, method: str, settings: dict | None = None) -> str:
        blob = json.dumps({"format": FORMAT, "common": self.common, "check": check, "method": method,
                           "settings": settings or {}}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def path(self, check: str, method: str, settings: dict | None = None) -> Path | None:
        if self.folder is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{check}.{method}")
        return self.folder / f"{safe}.{self.key(check, method, settings)}.pt"

    def has(self, check: str, method: str, settings: dict | None = None) -> bool:
        p = self.path(check, method, settings)
        return p is not None and p.is_file()

    def load(self, check: str, method: str, settings: dict | None = None) -> dict | None:
        """The saved part, or None when it was never finished (or cannot be read)."""
        p = self.path(check, method, settings)
        if p is None or not p.is_file():
            return None
        try:
            data = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged part is recomputed, never fatal
            log.warning("cannot read the saved part %s (%s); computing it again", p, e)
            return None
        if not isinstance(data, dict):
            log.warning("the saved part %s is not a part; computing it again", p)
            return None
        self.loaded.append(f"{method} {check}")
        return data

    def save(self, check: str, method: str, settings: dict | None, data: dict) -> None:
        """Write one finished part atomically (nothing when the store keeps nothing)."""
        p = self.path(check, method, settings)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")  # a new name: no link to follow
        with os.fdopen(fd, "wb") as f:
            torch.save(_cpu(data), f)
        os.replace(tmp, p)  # a killed process leaves the old state, never half a part
        self.saved.append(f"{method} {check}")

    def clear(self) -> int:
        """Delete every saved part in the folder (``--restart``); returns how many."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        gone = 0
        for f in self.folder.glob("*.pt"):
            f.unlink()
            gone += 1
        return gone


def _cpu(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cpu(v) for v in value]
    return value
