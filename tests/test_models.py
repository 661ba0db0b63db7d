"""Model loading, logits extraction, layer listing, checkpoints and hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.errors import ChoiceError, ModelLoadError
from mikata.hooks import capture, get_layer, preserved
from mikata.models import list_layers, load_model, save_checkpoint
from mikata.models.efficientnet_lite import VARIANTS, build_efficientnet_lite, load_packaged_weights, packaged_weights_path
from mikata.prediction import predict

CATS = {"tiger cat", "Egyptian cat", "tabby", "Persian cat", "Siamese cat", "lynx"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_builtin_matches_reference_loader(variant):
    """Our module tree gives the same logits as the package's own EfficientNet-Lite loader."""
    from efficientnet_lite_pytorch import EfficientNet

    ours = build_efficientnet_lite(variant).eval()
    load_packaged_weights(ours, variant)
    ref = EfficientNet.from_pretrained(variant, weights_path=packaged_weights_path(variant)).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    x_native = torch.randn(1, 3, VARIANTS[variant][2], VARIANTS[variant][2], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ours(x_native), ref(x_native), atol=1e-5)
    with torch.no_grad():  # other sizes: ours pads like TF "SAME"; just check it runs
        assert ours(x).shape == (2, 1000)


def test_builtin_names_sensible_classes_for_real_photos(lite0, photos):
    names = [p.name.removesuffix(".png") for p in photos.values()]
    results = {n: r for n, r in zip(names, predict(lite0, list(photos.values()), top=5))}
    assert results["chelsea"].top[0][0] in CATS
    assert results["coffee"].top[0][0] in {"espresso", "cup", "coffee mug"}
    assert {"palace", "monastery", "castle", "bell cote", "pagoda"} & {t[0] for t in results["china"].top}
    assert results["flower"].top[0][0] in {"daisy", "bee", "pot", "sea anemone"}
    assert {"academic gown", "mortarboard", "military uniform", "suit"} & {t[0] for t in results["grace_hopper"].top}
    for r in results.values():
        probs = [p for _, _, p in r.top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_bad_files_do_not_lose_good_predictions(lite0, photos, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [photos["chelsea"], tmp_path / "empty.png", photos["coffee"]]
    out = predict(lite0, paths, top=1, batch_size=2)
    assert [r.error is None for r in out] == [True, False, True]
    assert out[0].top[0][0] in CATS and "empty" in out[1].error


def test_layers_of_builtin(lite0):
    layers = {l.name: l for l in list_layers(lite0)}
    assert layers["head"].is_default and layers["head"].output_shape == (1280, 7, 7)
    assert layers["stem.conv"].output_shape == (32, 112, 112) and layers["stem.conv"].parameters == 32 * 3 * 9
    assert layers["fc"].output_shape == (1000,)
    assert sum(l.is_default for l in layers.values()) == 1


def test_default_layer_keeps_at_least_4x4_cells_at_small_inputs(lite0):
    """At 64 px lite0's head is 2x2 (a map of four blobs): the rule takes the last whole stage whose
    map has >= 4x4 cells instead; at 224 px the head (7x7) stays the choice."""
    from mikata.models.layers import cam_layer_size, describe_cam_layer, trace_layers

    def default(size: int) -> tuple[str, tuple[int, ...]]:
        return next((l.name, l.output_shape) for l in trace_layers(lite0.net, 3, (size, size)) if l.is_default)

    assert default(224) == ("head", (1280, 7, 7))
    assert default(128) == ("head", (1280, 4, 4))
    assert default(64) == ("blocks.10", (112, 4, 4))  # not blocks.11.expand, a conv inside the next block
    assert default(32) == ("blocks.4", (40, 4, 4))
    small = load_model("efficientnet-lite0", input_size=64)
    assert small.default_layer == "blocks.10" and lite0.default_layer == "head"
    assert cam_layer_size(small.net, 3, (64, 64), "blocks.10") == (4, 4)
    assert describe_cam_layer("blocks.10", (4, 4)) == "CAM layer: blocks.10 (4x4 map)"
    assert "coarse" in describe_cam_layer("head", (2, 2))


def test_default_layer_rule_on_a_hand_made_net():
    """A block that is not a container is never entered; with no map of 4x4 the last one > 1x1 stays."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Conv2d(4, 4, 3, padding=1)
            self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.down(self.inner(x))

    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Block(), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    from mikata.models.layers import trace_layers

    at = {s: next(l.name for l in trace_layers(net, 1, (s, s)) if l.is_default) for s in (16, 8, 4)}
    assert at[16] == "2"   # 4x4 after two halvings: the last block itself
    assert at[8] == "1"    # the last block gives 2x2: the block before it (4x4), not "2.inner"
    assert at[4] == "0"    # only the stem keeps 4x4 ("1.inner" does too, but lies inside a block)
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3, stride=4), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    # at the sizes networks are designed for, a 2x2 map by design (VGG-style pooling) stays the choice
    assert next(l.name for l in trace_layers(pooled, 1, (224, 224)) if l.is_default) == "1"
    assert next(l.name for l in trace_layers(pooled, 1, (64, 64)) if l.is_default) == "0"


def test_layers_of_torchvision_resnet18(resnet18):
    layers = {l.name: l for l in list_layers(resnet18)}
    assert resnet18.default_layer == "layer4" and layers["layer4"].is_default
    assert layers["layer4"].output_shape == (512, 7, 7)
    assert layers["conv1"].parameters == 64 * 3 * 49
    assert sum(l.parameters for n, l in layers.items() if "." not in n) == sum(p.numel() for p in resnet18.net.parameters())


def test_checkpoint_round_trip_gives_identical_logits(resnet18, tmp_path):
    resnet18.metadata["note"] = "kept"
    path = save_checkpoint(resnet18, tmp_path / "m.safetensors")
    again = load_model(str(path))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(resnet18.model(x), again.model(x))
    assert again.class_names == resnet18.class_names and again.default_layer == "layer4"
    assert again.metadata["note"] == "kept"


def test_builtin_checkpoint_with_new_head(tmp_path):
    from mikata.models import replace_head

    handle = load_model("efficientnet-lite0", pretrained=False)
    handle.metadata["head"] = replace_head(handle.net, 3)
    handle.class_names = ["a", "b", "c"]
    path = save_checkpoint(handle, tmp_path / "three.safetensors")
    again = load_model(str(path))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(handle.net.eval()(x), again.model(x)) and again.num_classes == 3


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        f = self.conv(x).mean((2, 3))
        return {"features": f, "logits": self.fc(f)}


class SoftmaxNet(TupleNet):
    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.fc(self.conv(x).mean((2, 3))))


def make_tuple_net():
    return TupleNet()


def make_softmax_net():
    return SoftmaxNet()


def test_dict_output_and_trailing_softmax_give_logits():
    tup = load_model(f"{__name__}:make_tuple_net")
    soft = load_model(f"{__name__}:make_softmax_net")
    soft.net.load_state_dict(tup.net.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = tup.model(x)
    assert logits.shape == (2, 5)
    assert torch.allclose(soft.model(x), logits, atol=1e-6)  # the softmax's input, not its output
    assert soft.model.softmax_layer == "softmax"


def test_torchscript_and_pickled_models(tmp_path):
    net = TupleNet().eval()
    plain = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)).eval()
    script_path = tmp_path / "m.ts"
    torch.jit.script(plain).save(str(script_path))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(str(script_path)).model(x), plain(x))
    pickled = tmp_path / "whole.pt"
    torch.save(net, pickled)
    with pytest.raises(ModelLoadError, match="--trust"):
        load_model(str(pickled))
    assert load_model(str(pickled), trust=True).model(x).shape == (1, 5)


def test_unknown_specs_and_classes_explain_themselves(lite0):
    with pytest.raises(ModelLoadError, match="efficientnet-lite0"):
        load_model("not-a-model")
    with pytest.raises(ChoiceError, match="tabby"):
        lite0.class_index("tabbby")
    assert lite0.class_index("Tabby") == lite0.class_index(281) == 281


def test_one_channel_models_get_one_channel_inputs(tmp_path):
    from PIL import Image

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    from mikata.models import ModelHandle

    handle = ModelHandle(net=net, class_names=list("abc"), input_size=(28, 28), mean=(0.5,), std=(0.5,),
                         in_channels=1)
    path = tmp_path / "rgb.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    out = predict(handle, [path], top=2)
    assert out[0].error is None and len(out[0].top) == 2
    assert handle.preprocess([Image.open(path)]).shape == (1, 1, 28, 28)


def test_hooks_are_removed_even_when_the_body_raises(resnet18):
    net = resnet18.net
    before = [(len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks)) for m in net.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with preserved(net), capture(net, ["layer4", "layer3"], gradients=True) as rec:
            net.train()
            for p in net.parameters():
                p.requires_grad_(False)
            net(torch.randn(1, 3, 64, 64))
            assert rec.activations["layer4"].shape == (1, 512, 2, 2)
            raise RuntimeError("boom")
    after = [(len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks)) for m in net.modules()]
    assert before == after
    assert not net.training and all(p.requires_grad for p in net.parameters())
    with pytest.raises(ChoiceError, match="layer4"):
        get_layer(net, "layer9")


def test_gradients_are_captured(resnet18):
    net = resnet18.net
    x = torch.randn(1, 3, 64, 64)
    with capture(net, ["layer4"], gradients=True) as rec:
        resnet18.model(x)[0, 3].backward()
    assert rec.gradients["layer4"].shape == rec.activations["layer4"].shape


def test_torchvision_failure_is_explained(monkeypatch):
    import builtins
    import sys

    from mikata.models import import_torchvision

    real_import = builtins.__import__

    def broken(name, *a, **k):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ModelLoadError, match="compiled operators"):
        import_torchvision()


def test_class_names_must_match_the_outputs():
    from mikata.models import ModelHandle

    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with pytest.raises(ModelLoadError, match="3 outputs but 2 class names"):
        ModelHandle(net=net, class_names=["a", "b"], input_size=(16, 16))
