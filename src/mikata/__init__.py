"""mikata — see what a CNN image classifier has learned and why it gets images wrong.

The top-level functions are the ones the ``mikata`` command calls, so a notebook and the command
line give the same answers. Importing mikata is light: torch and friends load when a function that
needs them is first used.

Example:
    >>> import mikata
    >>> handle = mikata.load_model("efficientnet-lite0")                        # doctest: +SKIP
    >>> mikata.predict(handle, ["chelsea.png"], top=3)                          # doctest: +SKIP
    >>> mikata.explain(handle, "chelsea.png", ["gradcam", "guided-gradcam"])    # doctest: +SKIP
    >>> run = mikata.open_run("mikata-demo/run"); run.label_issues()           # doctest: +SKIP

No public name here is also the name of a submodule (``tests/test_api.py`` checks it), so importing
``mikata.something`` never replaces a function with a module.
"""

from __future__ import annotations

from mikata.lazy import lazy_names

__version__ = "0.1.0"

# public name -> (module, attribute), imported on first use (mikata.lazy)
_API = {
    "load_model": ("mikata.models.loading", "load_model"),
    "ModelHandle": ("mikata.models.handle", "ModelHandle"),
    "save_checkpoint": ("mikata.models.loading", "save_checkpoint"),
    "list_layers": ("mikata.models", "list_layers"),
    "load_image": ("mikata.data.images", "load_image"),
    "capture": ("mikata.hooks", "capture"),
    "predict": ("mikata.prediction", "predict"),
    "explain": ("mikata.attribution.explanation", "explain_images"),
    "explain_figure": ("mikata.attribution.figure", "explain_figure"),
    "Explanation": ("mikata.attribution.explanation", "Explanation"),
    "visualize": ("mikata.featurevis.units", "visualize"),
    "RenderOptions": ("mikata.featurevis.optimize", "RenderOptions"),
    "activations": ("mikata.inspect.activations", "activation_grid"),
    "filters": ("mikata.inspect.filters", "filter_grid"),
    "train": ("mikata.training.loop", "train"),
    "scan": ("mikata.scanning.scan", "scan"),
    "crossval": ("mikata.scanning.crossval", "crossval"),
    "open_run": ("mikata.analysis.run", "open_run"),
    "Run": ("mikata.analysis.run", "Run"),
    "RunView": ("mikata.analysis.view", "RunView"),
    "ModelSource": ("mikata.models.source", "ModelSource"),
    "export_run": ("mikata.analysis.export", "export_run"),
    "calibrate": ("mikata.analysis.temperature", "calibrate_run"),
    "expected_calibration_error": ("mikata.analysis.calibration", "expected_calibration_error"),
    "reliability_curve": ("mikata.analysis.calibration", "reliability_curve"),
    "compare": ("mikata.analysis.compare", "compare"),
    "Comparison": ("mikata.analysis.compare", "Comparison"),
    "evaluate": ("mikata.evaluation.scorecard", "evaluate"),
}

__all__ = sorted(_API) + ["__version__"]


__getattr__, __dir__ = lazy_names(__name__, _API)
