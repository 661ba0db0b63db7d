"""Measuring attribution maps: faithfulness, sanity checks, localization, stability, a scorecard.

Example:
    >>> from mikata.evaluation import evaluate                                      # doctest: +SKIP
    >>> card = evaluate(handle, x, ["gradcam", "saliency"], steps=50)            # doctest: +SKIP
    >>> card.table["gradcam"]["deletion-auc"]                                     # doctest: +SKIP
"""

from mikata.evaluation.faithfulness import auc, perturbation_curves
from mikata.evaluation.randomization import cascade, random_logit, spearman, ssim
from mikata.evaluation.stability import max_sensitivity
from mikata.evaluation.localization import energy_inside, pointing_game

__all__ = ["auc", "cascade", "energy_inside", "max_sensitivity", "perturbation_curves", "pointing_game",
           "random_logit", "spearman", "ssim", "evaluate"]


def evaluate(*args, **kwargs):
    """See ``mikata.evaluation.scorecard.evaluate``."""
    from mikata.evaluation.scorecard import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
