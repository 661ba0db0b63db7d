"""A run's images by id: the safe way from an id to a file, thumbnails, and encoded images.

The web app and the HTML report never take a path from a user: they take a row id, and
``image_file`` turns it into a file only if that file, with every symlink resolved, still lies
inside one of the run's data roots (``data.paths``: a root read from the manifest is used only if
it is a plausible data folder, never ``/`` or a system folder). Anything else (unknown id, skipped row, a symlink pointing out of
the data folder, a file deleted since the scan) is an ``UnknownImageError``, which the server
answers with 404.

Example:
    >>> with RunStore.open("runs/fashion") as store:                     # doctest: +SKIP
    ...     png = thumbnail(image_file(store, 1), size=96)
"""

from __future__ import annotations

import base64
import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from mikata.runs.store import RunStore
from mikata.data.paths import UnservableFileError, file_inside, files_inside


class UnknownImageError(UnservableFileError):
    """No servable image for this id (unknown, skipped, missing, or outside the dataset root)."""


def image_file(store: RunStore, image_id: int, row: dict | None = None) -> Path:
    """The file behind a row id, resolved, and guaranteed to lie inside one of the run's data roots (``data.paths``: a root read from the manifest is used only if
it is a plausible data folder, never ``/`` or a system folder).

    ``row``: the id's ``store.image`` row when the caller already has it (no second lookup).
    """
    row = store.image(image_id) if row is None else row
    if row is None:
        raise UnknownImageError(f"no image with id {image_id} in this run")
    try:
        return file_inside(row["path"], store.manifest["data_roots"])
    except UnservableFileError as e:
        raise UnknownImageError(f"image {image_id} {e}") from None


def image_files(store: RunStore, ids: Iterable[int]) -> dict[int, Path]:
    """``image_file`` for many usable ids in few queries: id -> file, leaving out those it would refuse."""
    return files_inside(store.paths(ids, status="ok"), store.manifest["data_roots"])


def thumbnail(path: str | os.PathLike, size: int = 96, quality: int = 85) -> bytes:
    """A PNG (small, lossless images) or JPEG (photos) no larger than ``size`` on its longer side.

    A small gray image stays one channel (a third of the PNG bytes). The web app and the report
    both make their thumbnails here. Cached by (path, modification time, size): a grid page asks
    for the same thumbnails again.
    """
    st = os.stat(path)
    return _thumbnail(str(path), st.st_mtime_ns, st.st_size, int(size), int(quality))


@lru_cache(maxsize=4096)
def _thumbnail(path: str, mtime_ns: int, nbytes: int, size: int, quality: int) -> bytes:
    from mikata.data.images import load_image

    img = load_image(path)
    img.thumbnail((size, size), Image.BILINEAR)
    small = img.width * img.height <= 64 * 64
    if small:
        a = np.asarray(img)  # (h, w, 3)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            img = Image.fromarray(a[..., 0])
    return encode(img, "PNG" if small else "JPEG", quality=quality)


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", quality: int = 85) -> bytes:
    """PNG or JPEG bytes of an image or an ``(H, W, 3)`` uint8 array."""
    if not isinstance(img, Image.Image):
        img = Image.fromarray(np.asarray(img, dtype=np.uint8))
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def mime_type(data: bytes) -> str:
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


def data_uri(data: bytes) -> str:
    """Bytes of a PNG or JPEG as a ``data:`` URI, for a self-contained HTML file."""
    return f"data:{mime_type(data)};base64,{base64.b64encode(data).decode('ascii')}"
