"""The method registry: a new method is one function plus one registry entry, and every reader sees it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.attribution import explain, registry
from mikata.attribution.engine import check_methods
from mikata.attribution.registry import MethodContext, MethodSpec
from mikata.errors import ChoiceError
from mikata.models.handle import ModelHandle


def squared_gradient(ctx: MethodContext) -> tuple[list[torch.Tensor], dict]:
    """The toy method: the plain input gradient squared (its whole "file")."""
    return [g.pow(2) for g in ctx.shared.input_grads["plain"]], {"toy": True}


TOY = MethodSpec("toy-squared-gradient", "Toy squared gradient", "gradient", squared_gradient,
                 backwards=(("plain", "input"),), reduce="sum")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    return ModelHandle(net, ["a", "b", "c"], input_size=(8, 8), default_layer="1")


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_toy_method_runs_through_explain_and_every_reader(small):
    with registry.registered(TOY):
        assert check_methods(["Toy-Squared-Gradient"]) == ["toy-squared-gradient"]
        assert "toy-squared-gradient" in registry.method_listing()
        assert registry.titles()["toy-squared-gradient"] == "Toy squared gradient"
        toy, sal = explain(small, X, ["toy-squared-gradient", "saliency-signed"], targets=1)
        torch.testing.assert_close(toy.raw, sal.raw.pow(2))  # shares the saliency backward
        torch.testing.assert_close(toy.maps, sal.raw.pow(2).sum(1))  # the spec's reduction
        assert toy.info == {"toy": True} and toy.layer is None and toy.timings["shared_pass"] > 0
        # SmoothGrad wraps any gradient-kind method: with sigma 0 it is its base
        sg = explain(small, X, ["smoothgrad"], targets=1,
                     options={"smoothgrad": {"base": "toy-squared-gradient", "sigma": 0.0, "samples": 2}})[0]
        torch.testing.assert_close(sg.raw, toy.raw)
        torch.testing.assert_close(sg.maps, toy.maps)  # reduced as its base
    with pytest.raises(ChoiceError):
        check_methods(["toy-squared-gradient"])  # gone after the block


def test_smoothgrad_of_guided_gradcam_uses_the_layer(small):
    sg = explain(small, X, ["smoothgrad"], options={"smoothgrad": {"base": "guided-gradcam", "sigma": 0.0,
                                                                  "samples": 1}})[0]
    ggc = explain(small, X, ["guided-gradcam"])[0]
    torch.testing.assert_close(sg.raw, ggc.raw)
    with pytest.raises(ChoiceError) as info:  # layer-resolution maps cannot be averaged at the input
        explain(small, X, ["smoothgrad"], options={"smoothgrad": {"base": "gradcam"}})
    assert "saliency" in str(info.value)


def test_specs_are_checked_and_names_are_unique():
    with pytest.raises(ChoiceError):
        MethodSpec("x", "X", "magic", squared_gradient)
    with pytest.raises(ChoiceError):
        MethodSpec("x", "X", "gradient", squared_gradient, backwards=(("sideways", "input"),))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(MethodSpec("gradcam", "again", "layer", squared_gradient))
    assert registry.get("gradcam").title == "Grad-CAM"


def test_derived_tables_match_the_registry():
    import mikata.attribution
    from mikata.presentation.maps import LAYER_MAP_METHODS

    assert mikata.attribution.METHODS == registry.names()  # asked of the registry when read
    assert set(LAYER_MAP_METHODS) == {"gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "scorecam",
                                      "attention-rollout", "gradient-rollout"}  # the last two: at the patch grid
    assert set(registry.names(grid=True)) == {"gradcam", "gradcam++", "layercam", "saliency", "guided-gradcam"}
    guided = registry.get("guided-backprop")
    assert (guided.backwards[0][0], guided.reduction({})) == ("guided", "maxabs")
    assert set(registry.names(kind="sampling")) == {"smoothgrad", "smoothgrad-squared", "vargrad",
                                                    "integrated-gradients"}
