"""When a concept looks like a shortcut, and the sentence that says why (never a verdict).

The rule: a concept is a suspect when it carries a large share of the class's evidence (``IMPORTANT``), is
compact (covers at most ``COMPACT`` of the image: a mark, a tag, a patch), and the model uses it: filling its
region flips at least ``USED_FLIP`` of the class's predictions or drops P(class) by ``USED_DROP`` on average.
Chosen with branch concepts-eval by a grid search over the 200 concepts of 10 planted / clean-twin runs
(lite0 fine-tuned on Fashion-MNIST, 5 artefact kinds): it flags the planted mark and texture patch (flip
0.84-0.88, drop 0.82) and none of the 197 others; the compact, important object parts (collars, a sleeve)
top out at flip 0.67 / drop 0.53, the garment's middle covers 24-25% of the image. "At a fixed place" is not
a cue on its own: in an aligned dataset every object part is at a fixed place. Where the concept sits
(center, spread, distance from the image's center) is still in the sentence for the person who judges.
A concept off the object (at least ``compute.OFF_OBJECT`` of its map on the image's context: the pixels where
the other classes' images hardly vary, an empty background or the edges) is deletion-tested with its region
AND the whole context filled with the other classes' mean image: a noisy background is spread out, so
filling one band of it shows no use (flip 0.06 on concepts-eval's background case), filling it all does
(0.69), while on clean images the context already looks like the reference and nothing changes. Not caught
by a concept: a frame (NMF splits it by side into concepts each too small a share of the evidence) and a
brightness / contrast shift (global, on the object too); the class-level tests (``classtests``: the whole
context filled, the intensity range matched) catch those with the same ``USED_FLIP`` / ``USED_DROP``.
"""

from __future__ import annotations

IMPORTANT = 0.3
COMPACT = 0.15  # on a 4x4 grid one cell is 6%: the middle of a garment is 4 cells, 25%
FIXED = 0.08  # spread at most this: "sits at the same place" in the sentence
USED_FLIP, USED_DROP = 0.7, 0.6
TESTED_IMPORTANCE = 0.05  # below this share of the evidence a concept gets no deletion test (compute.py)


def suspect(c: dict, cls: str, off: float, removal: dict | None = None, context: bool = False) -> tuple[bool, str]:
    """``(suspected shortcut, evidence sentence)`` for one concept entry of the atlas; ``off``: the mean
    distance of its center from the image's center, image by image (``describe.location``); ``removal``: the
    direction-removal deletion test (reported in the sentence; the rule uses the region test, which is what
    tells a place in the image); ``context``: its region test also filled the image's context (off the object)."""
    imp, area, spread = c["importance"], c["area"], c["location"]["spread"]
    cx, cy = c["location"]["center"]
    d = c["deletion"]
    important = imp >= IMPORTANT
    compact = 0 < area <= COMPACT
    fixed = spread <= FIXED and c["presence"] > 0
    used = d["images"] > 0 and (d["flip_rate"] >= USED_FLIP or d["mean_drop"] >= USED_DROP)
    place = ("sits at the same place in the images that have it" if fixed else "moves between images") + \
        f" (mean center {cx:.2f}, {cy:.2f}; spread {spread:.2f}; {off:.2f} from the image's center on average)"
    text = (f"{c['concept']} carries {round(100 * imp)}% of {cls}'s evidence, is in {round(100 * c['presence'])}% of "
            f"its images, covers {round(100 * area)}% of the image and {place}; ")
    if d["images"]:
        what = ("its region and the image's context (where the other classes' images are alike) with the other "
                "classes' mean image" if context else "its region with the mean colour")
        text += (f"filling {what} on {d['images']} images that have it flips "
                 f"{round(100 * d['flip_rate'])}% of the {cls} predictions and drops P({cls}) by {d['mean_drop']:.2f}.")
        if removal and removal.get("images"):
            text = text[:-1] + (f"; removing its direction from the layer's activations flips "
                                f"{round(100 * removal['flip_rate'])}% and drops P({cls}) by {removal['mean_drop']:.2f}.")
    elif imp < TESTED_IMPORTANCE:
        text += f"not deletion-tested: it carries under {round(100 * TESTED_IMPORTANCE)}% of the evidence."
    else:
        text += "no image has it strongly enough for a deletion test."
    flagged = important and compact and used
    if flagged:
        text += " Suspected shortcut: look at its exemplars and judge whether it is the object or an artefact."
    return bool(flagged), text
