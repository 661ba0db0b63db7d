"""One image decoder for every command: real files, not just clean 8-bit RGB JPEGs.

It applies EXIF orientation, converts CMYK, scales 16-bit and float images to 8 bits (never
clips them), composites transparency onto a background (so hidden colors under alpha=0 never
show), and turns every kind of unreadable file into one ``ImageDecodeError`` naming the file.

Example:
    >>> img = load_image("photo.jpg")            # doctest: +SKIP
    >>> img.mode, img.size                       # doctest: +SKIP
    ('RGB', (640, 480))
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mikata.errors import ImageDecodeError, ImageTooLargeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold (about 9,459 x 9,459)
# Largest image the resize before the center crop may produce. The resize scales the *shorter*
# side to the model's, so a thin strip explodes: 65000x1 px (195 KB as PNG) at 256 px is 16.6M x 256
# = 4.3 G pixels (12.8 GB RGB). 64 M pixels (192 MB RGB) still lets a 4096 px model take a 3:1 photo.
MAX_RESIZED_PIXELS = 64 * 1024 * 1024


def load_image(
    path: str | os.PathLike,
    mode: str = "RGB",
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode ``path`` to an 8-bit ``mode`` image ("RGB" or "L").

    Raises ``ImageDecodeError`` for missing, empty, truncated, non-image and oversized files.

    Example:
        >>> img = mikata.load_image("chelsea.png")
        >>> img.size, img.mode
        ((451, 300), 'RGB')
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    p = Path(path)
    if not p.is_file():
        raise ImageDecodeError(p, "no such file" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise ImageDecodeError(p, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if img.width * img.height > max_pixels:
                    raise ImageDecodeError(
                        p, f"{img.width}x{img.height} pixels is over the decompression bomb limit of "
                        f"{max_pixels:,}; raise max_pixels if you trust this file")
                img.load()
                img = ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(p, f"refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageDecodeError(p, "not an image, or a format Pillow cannot read") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(p, f"corrupt or truncated image data ({e})") from e
    return to_8bit(img, mode, background)


def to_8bit(img: Image.Image, mode: str = "RGB", background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB or L, compositing alpha over ``background``."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _scale_high_depth(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif img.mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, background)
        canvas.paste(img, mask=img.getchannel("A"))
        img = canvas
    if img.mode != mode:
        img = img.convert(mode)
    return img


def _scale_high_depth(img: Image.Image) -> Image.Image:
    """High-depth pixels to 8 bits by the range their mode actually holds, never clipped.

    - ``I;16`` modes are unsigned 16-bit: divided by 65535.
    - ``I`` (signed 32-bit) is also what Pillow makes of 16-bit PNGs, so: values within 0..255 are
      8-bit, within 0..65535 16-bit; anything else (negative values, as in a signed TIFF, or above
      65535) is stretched from its own minimum..maximum to 0..255. Dividing by the type's nominal
      range would crush a -992..528 image to 3 grey levels, or a positive one to black.
    - ``F`` (float): 0..1 kept as is, anything else stretched from its minimum..maximum.
    """
    arr = np.asarray(img).astype(np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    if img.mode.startswith("I;16"):
        arr = arr / 65535.0 * 255.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255.0
    elif img.mode == "I" and lo >= 0 and hi <= 255:
        pass
    elif img.mode == "I" and lo >= 0 and hi <= 65535:
        arr = arr / 65535.0 * 255.0
    else:
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def check_resize_plan(width: int, height: int, target: tuple[int, int],
                      max_pixels: int = MAX_RESIZED_PIXELS, path: str | os.PathLike = "") -> None:
    """Refuse a planned resize of a ``width`` x ``height`` image to ``target`` (w, h) that is too big.

    Called with the plan, before Pillow allocates anything: the decompression-bomb guard looks at
    the file's pixels, this one at what preprocessing would make of them.
    """
    tw, th = int(target[0]), int(target[1])
    if tw * th > max_pixels:
        ratio = max(width, height) / max(1, min(width, height))
        raise ImageTooLargeError(
            path, f"{width}x{height} pixels (aspect ratio {ratio:,.0f}:1) would be resized to {tw:,}x{th:,} "
            f"= {tw * th:,} pixels for the model, over the limit of {max_pixels:,}; crop the image to a less "
            "extreme shape")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def expand_image_paths(paths: "Sequence[str | os.PathLike]", missing_ok: bool = False) -> list[str]:
    """Image files from files and folders, in order: a folder gives its image files (by extension),
    recursively, sorted. What ``predict``, ``explain``-like commands and ``evaluate`` accept alike.

    A folder without images is an error (``MikataError``): the user meant something else. A file
    that does not exist is an ``ImageDecodeError``, unless ``missing_ok`` (then it is kept, and the
    caller reports it as that file's own failure).
    """
    from mikata.errors import MikataError

    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(os.path.join(d, f) for d, _, files in os.walk(p) for f in files if is_image_file(f))
            if not found:
                raise MikataError(f"folder {p} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS)[:4])}, ...)")
            out += found
        elif os.path.exists(p) or missing_ok:
            out.append(p)
        else:
            raise ImageDecodeError(p, "no such file or folder; give image files, folders of images or a run directory")
    return out
