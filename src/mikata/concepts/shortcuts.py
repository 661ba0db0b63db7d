"""When a concept looks like a shortcut, and the sentence that says why (never a verdict).

The rule: a concept is a suspect when it carries a large share of the class's evidence (``IMPORTANT``),
the model uses it (deleting its region flips predictions or drops P(class): ``USED_FLIP`` / ``USED_DROP``),
and it is either compact (covers at most ``COMPACT`` of the image: a mark, a watermark, a patch) or sits at
the same off-center place in every image that has it (``FIXED`` spread, at least ``OFF_CENTER`` from the
image's center: a corner tag, a border side). A centered object in a centered dataset also sits "at a
fixed place", which is why a fixed place alone must be off the center to count. The tool cannot know
whether a concept is the object or an artefact: the evidence sentence shows the numbers, the person
judges (``reviews``).
"""

from __future__ import annotations

IMPORTANT = 0.15
COMPACT = 0.25
FIXED, OFF_CENTER = 0.08, 0.2
USED_FLIP, USED_DROP = 0.2, 0.1


def suspect(c: dict, cls: str) -> tuple[bool, str]:
    """``(suspected shortcut, evidence sentence)`` for one concept entry of the atlas."""
    imp, area, spread = c["importance"], c["area"], c["location"]["spread"]
    cx, cy = c["location"]["center"]
    off = ((cx - 0.5) ** 2 + (cy - 0.5) ** 2) ** 0.5
    d = c["deletion"]
    important = imp >= IMPORTANT
    compact = 0 < area <= COMPACT
    fixed = spread <= FIXED and off >= OFF_CENTER and c["presence"] > 0
    used = d["images"] > 0 and (d["flip_rate"] >= USED_FLIP or d["mean_drop"] >= USED_DROP)
    where = []
    if compact:
        where.append(f"covers {round(100 * area)}% of the image")
    if fixed:
        where.append(f"sits at the same place in every image that has it (center {cx:.2f}, {cy:.2f}; spread {spread:.2f})")
    shape = " and ".join(where) if where else f"covers {round(100 * area)}% of the image, spread {spread:.2f}"
    text = (f"{c['concept']} carries {round(100 * imp)}% of {cls}'s evidence, is in {round(100 * c['presence'])}% of "
            f"its images and {shape}; ")
    if d["images"]:
        text += (f"filling its region with the mean colour on {d['images']} images that have it flips "
                 f"{round(100 * d['flip_rate'])}% of the {cls} predictions and drops P({cls}) by {d['mean_drop']:.2f}.")
    else:
        text += "no image has it strongly enough for a deletion test."
    flagged = important and used and (compact or fixed)
    if flagged:
        text += " Suspected shortcut: look at its exemplars and judge whether it is the object or an artefact."
    return bool(flagged), text
