"""When a concept looks like a shortcut, and the sentence that says why (never a verdict).

The rule (tuned on branch concepts-eval's planted cases: a corner mark found, centered garment parts of
the clean twins not flagged): a concept is a suspect when
- it carries a large share of the class's evidence (``IMPORTANT``),
- the model uses it: filling its region flips at least ``USED_FLIP`` of the class's predictions or drops
  P(class) by ``USED_DROP`` on average (object parts of aligned garments flip 0.1-0.6; the planted mark and
  texture patch 0.84-0.88),
- it sits away from the image's center in the images that have it (``OFF_CENTER``: the mean distance of its
  center from (0.5, 0.5), image by image, so a patch placed anywhere counts): in a centered dataset the
  object is compact and central, so neither "compact" nor "always at the same place" alone tells an
  artefact from the object,
- and it is compact (covers at most ``COMPACT`` of the image: a mark, a tag, a patch) or sits at the same
  place in every image that has it (``FIXED`` spread).
The tool cannot know whether a concept is the object or an artefact: the evidence sentence shows the numbers,
the person judges (``reviews``). Artefacts spread over the whole image (a frame, a brightness shift, a
background) are not caught by this rule: NMF splits a frame by side, and a global shift is not a place.
"""

from __future__ import annotations

IMPORTANT = 0.15
COMPACT = 0.15  # on a 4x4 grid one cell is 6%: the middle of a garment is 4 cells, 25%
FIXED, OFF_CENTER = 0.08, 0.2
USED_FLIP, USED_DROP = 0.7, 0.65
TESTED_IMPORTANCE = 0.05  # below this share of the evidence a concept gets no deletion test (compute.py)


def suspect(c: dict, cls: str, off: float, removal: dict | None = None) -> tuple[bool, str]:
    """``(suspected shortcut, evidence sentence)`` for one concept entry of the atlas; ``off``: the mean
    distance of its center from the image's center, image by image (``describe.location``); ``removal``: the
    direction-removal deletion test (reported in the sentence; the rule uses the region test, which is what
    tells a place in the image)."""
    imp, area, spread = c["importance"], c["area"], c["location"]["spread"]
    cx, cy = c["location"]["center"]
    d = c["deletion"]
    important = imp >= IMPORTANT
    compact = 0 < area <= COMPACT
    fixed = spread <= FIXED and c["presence"] > 0
    away = off >= OFF_CENTER
    used = d["images"] > 0 and (d["flip_rate"] >= USED_FLIP or d["mean_drop"] >= USED_DROP)
    place = ("sits at the same place in the images that have it" if fixed else "moves between images") + \
        f" (mean center {cx:.2f}, {cy:.2f}; spread {spread:.2f}; {off:.2f} from the image's center on average)"
    text = (f"{c['concept']} carries {round(100 * imp)}% of {cls}'s evidence, is in {round(100 * c['presence'])}% of "
            f"its images, covers {round(100 * area)}% of the image and {place}; ")
    if d["images"]:
        text += (f"filling its region with the mean colour on {d['images']} images that have it flips "
                 f"{round(100 * d['flip_rate'])}% of the {cls} predictions and drops P({cls}) by {d['mean_drop']:.2f}.")
        if removal and removal.get("images"):
            text = text[:-1] + (f"; removing its direction from the layer's activations flips "
                                f"{round(100 * removal['flip_rate'])}% and drops P({cls}) by {removal['mean_drop']:.2f}.")
    elif imp < TESTED_IMPORTANCE:
        text += f"not deletion-tested: it carries under {round(100 * TESTED_IMPORTANCE)}% of the evidence."
    else:
        text += "no image has it strongly enough for a deletion test."
    flagged = important and used and away and (compact or fixed)
    if flagged:
        text += " Suspected shortcut: look at its exemplars and judge whether it is the object or an artefact."
    return bool(flagged), text
