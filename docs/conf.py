"""Sphinx configuration for mikata's documentation (built in CI with ``-n -W``: every reference resolves).

The guides are Markdown (MyST); the API pages are autodoc; the command-line page is generated from the argparse parsers at build time
(``_ext/mikata_cli.py``); the guides are the manual's sections. References into other packages (torch,
numpy, pandas, PIL, the standard library) are not resolved: no inventory is fetched at build time.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "_ext"))

project = "mikata"
author = "mikata developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser", "mikata_cli"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3  # guides link to each other's sections
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
exclude_patterns = ["_build"]

nitpicky = True
# other packages' types: named in signatures, documented elsewhere
nitpick_ignore_regex = [
    ("py:class", r"(torch|numpy|np|pandas|pd|PIL|Image|os|pathlib|threading|nn|matplotlib|collections|typing"
                 r"|concurrent|sqlite3)(\..*)?"),
    ("py:class", r"'?(Path|Image\.Image|Figure|Module|T)'?"),
    ("py:class", r"mikata\.analysis\.view\.T"),
    ("py:class", r"'?(list|dict|tuple)\[.*"),  # a quoted generic split by its commas
]
# names that annotations spell without their module (imported only for type checking), or quoted
SHORT_NAMES = {
    "Curves": "mikata.analysis.binary.Curves",
    "Attribution": "mikata.attribution.result.Attribution",
    "RunStore": "mikata.runs.store.RunStore",
    "RunData": "mikata.runs.data.RunData",
    "MapService": "mikata.presentation.maps.MapService",
    "DatasetIssues": "mikata.analysis.issues.DatasetIssues",
    "ClassView": "mikata.analysis.overview.ClassView",
    "Gallery": "mikata.analysis.gallery.Gallery",
    "ImageList": "mikata.notebook.ImageList",
    "MetricRow": "mikata.analysis.compare.MetricRow",
    "Paired": "mikata.analysis.compare.Paired",
    "Settings": "mikata.analysis.compare.Settings",
    "Matching": "mikata.analysis.compare_match.Matching",
    "Corrections": "mikata.training.corrections.Corrections",
    "Probe": "mikata.models.probe.Probe",
}


def _resolve_short_name(app, env, node, contnode):
    """A reference Sphinx did not find: retry it under the full name of a documented mikata type."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").strip("'\"")
    full = SHORT_NAMES.get(target, target if target.startswith("mikata.") else None)
    if full is None or full == node.get("reftarget"):
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], full, node,
                                              contnode)


def setup(app):
    app.connect("missing-reference", _resolve_short_name)
