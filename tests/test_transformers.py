"""Transformers: token / channels-last CAM layers against pytorch-grad-cam, attention methods against
slow references written from the papers, and the model-state guarantees (random weights, seeded)."""

from __future__ import annotations

import pytest
import torch
import transformer_models as tm
from attribution_helpers import assert_untouched, pearson, snapshot

from mikata.attribution import explain
from mikata.attribution.attention_maps import AttentionMethodError
from mikata.models.attention import NoAttentionError, capture_attention, fused_flags

# model -> (default CAM layer, its layout kind, prefix tokens)
DEFAULTS = {
    "vit": ("blocks.2.norm1", "tokens", 1),  # class token: the last block's attention input (grad-cam's recipe)
    "vit_registers": ("blocks.2.norm1", "tokens", 5),  # class + 4 registers set aside
    "deit": ("blocks.2.norm1", "tokens", 2),  # class + distillation token
    "swin": ("layers.1", "nhwc", 0),  # the last stage, channels-last
    "maxvit": ("norm", "nchw", 0),  # MaxViT's stages give (N, C, h, w): the CNN rule
    "eva": ("blocks.1", "tokens", 1),  # mean-pooled head: the last block's output, as on a CNN
    "beit": ("blocks.1", "tokens", 1),
    "hybrid": ("blocks.2.norm1", "tokens", 1),
}


@pytest.fixture(scope="module", params=list(DEFAULTS))
def model(request):
    return request.param, getattr(tm, request.param)()


def _x(handle, n=2, seed=0):
    return torch.randn(n, 3, *handle.input_size, generator=torch.Generator().manual_seed(seed))


def test_default_layer_and_layout(model):
    name, handle = model
    layer, kind, prefix = DEFAULTS[name]
    assert handle.default_layer == layer
    layout = handle.layout(layer)
    assert layout.kind == kind and layout.spatial and (kind != "tokens" or layout.prefix == prefix)


def _reshape(name, handle, layer):
    """pytorch-grad-cam's documented reshape_transforms, written out here (not our adapter)."""
    _, kind, prefix = DEFAULTS[name]
    kind = "tokens" if layer.endswith("norm2") and name == "swin" else kind
    h, w = handle.layout(layer).grid

    def tokens(t):  # (N, prefix + h*w, C) -> (N, C, h, w)
        t = t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2))
        return t.transpose(2, 3).transpose(1, 2)

    if kind == "tokens":
        return tokens
    if kind == "nhwc":  # Swin stage: (N, h, w, C)
        return lambda t: t.permute(0, 3, 1, 2)
    return None


@pytest.mark.parametrize("method,cls", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                        ("layercam", "LayerCAM")])
def test_cams_match_pytorch_grad_cam(model, method, cls):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name, handle = model
    layers = [handle.default_layer] + (["layers.1.blocks.1.norm2"] if name == "swin" else [])  # + Swin's doc recipe
    x = _x(handle)
    target = [3, 7]
    for layer in layers:
        module = dict(handle.net.named_modules())[layer]
        cam = getattr(pytorch_grad_cam, cls)(model=handle.model, target_layers=[module],
                                             reshape_transform=_reshape(name, handle, layer))
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target]))
        res = explain(handle, x, [method], targets=target, layer=layer)  # one result per target, for both images
        got = [res[i].maps[i] for i in range(len(target))]  # image i with target i, as grad-cam's targets
        for g, r in zip(got, ref):
            if float(r.std()) < 1e-6:  # a map grad-cam clamps to zero everywhere: ours is zero too
                assert float(g.abs().max()) < 1e-6
                continue
            assert pearson(g, r) >= 0.99, (name, layer, method)


# ------------------------------------------------------------------ slow references from the papers
def _vit_reference(net, x):
    """timm ViT forward written out with each block's attention softmax(q k^T / sqrt(d)) kept in the graph:
    logits and the attention matrices (N, heads, T, T)."""
    attns = []
    t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
    for blk in net.blocks:
        y = blk.norm1(t)
        a_mod = blk.attn
        n, count, c = y.shape
        qkv = a_mod.qkv(y).reshape(n, count, 3, a_mod.num_heads, c // a_mod.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a_mod.q_norm(q), a_mod.k_norm(k)
        a = torch.softmax((q @ k.transpose(-2, -1)) / (c // a_mod.num_heads) ** 0.5, dim=-1)
        attns.append(a)
        o = a_mod.proj(a_mod.norm((a @ v).transpose(1, 2).reshape(n, count, c)))
        t = t + blk.ls1(o)
        t = t + blk.ls2(blk.mlp(blk.norm2(t)))
    return net.forward_head(net.norm(t)), attns


def _rollout_reference(attns, prefix):
    """Abnar & Zuidema 2020, per image in numpy: A' = 0.5 A_mean + 0.5 I, rows renormalized, product."""
    out = []
    for i in range(attns[0].shape[0]):
        joint = None
        for a in attns:
            m = a[i].detach().double().mean(0).numpy()
            m = 0.5 * m + 0.5 * __import__("numpy").eye(m.shape[0])
            m = m / m.sum(axis=1, keepdims=True)
            joint = m if joint is None else m @ joint
        out.append(torch.from_numpy(joint[0, prefix:].copy()))
    return torch.stack(out)


def _gradient_rollout_reference(attns, logit, prefix):
    """Chefer et al. 2021, eq. (self-attention): R = I; R += mean_h (grad ⊙ A)^+ R, per image in numpy."""
    import numpy as np

    grads = torch.autograd.grad(logit, attns, retain_graph=True)
    out = []
    for i in range(attns[0].shape[0]):
        r = np.eye(attns[0].shape[-1])
        for a, g in zip(attns, grads):
            cam = np.maximum((g[i] * a[i]).detach().double().numpy(), 0).mean(0)
            r = r + cam @ r
        out.append(torch.from_numpy(r[0, prefix:].copy()))
    return torch.stack(out)


@pytest.mark.parametrize("name", ["vit", "vit_registers", "deit", "hybrid"])
def test_rollouts_match_references_from_the_papers(name):
    handle = getattr(tm, name)()
    prefix = DEFAULTS[name][2]
    x = _x(handle)
    with torch.enable_grad():
        logits, attns = _vit_reference(handle.net, x)
    torch.testing.assert_close(logits, handle.model(x), rtol=1e-4, atol=1e-5)  # the written-out forward is the model
    ours = explain(handle, x, ["attention-rollout", "gradient-rollout"], targets=[2, 5])
    roll = _rollout_reference(attns, prefix)
    for a in ours[:2]:
        assert a.method == "attention-rollout"
        for g, r in zip(a.raw.flatten(1), roll):
            assert pearson(g, r) >= 0.99
    for rank, target in enumerate([2, 5]):
        ref = _gradient_rollout_reference(attns, logits[:, target].sum(), prefix)
        got = ours[2 + rank]
        assert got.method == "gradient-rollout" and got.targets == [target, target]
        for g, r in zip(got.raw.flatten(1), ref):
            assert pearson(g, r) >= 0.99
            torch.testing.assert_close(g.double(), r, rtol=1e-3, atol=1e-6)


def test_attention_methods_leave_model_and_flags_as_they_were():
    handle = tm.vit()
    # a mix of settings: every flag must come back as it was, not just to a default
    for i, blk in enumerate(handle.net.blocks):
        blk.attn.fused_attn = bool(i % 2)
    flags = fused_flags(handle.net)
    before = snapshot(handle.model)
    x = _x(handle, 1)
    explain(handle, x, ["attention-rollout", "gradient-rollout", "gradcam"])
    assert fused_flags(handle.net) == flags
    assert_untouched(handle.model, before)
    with pytest.raises(RuntimeError), capture_attention(handle.net):  # also when the block raises
        raise RuntimeError("inside")
    assert fused_flags(handle.net) == flags
    assert_untouched(handle.model, before)


def test_gradient_rollout_is_class_specific_and_rollout_is_not():
    handle = tm.vit()
    x = _x(handle, 1)
    a = explain(handle, x, ["attention-rollout", "gradient-rollout"], targets=[1, 8])
    torch.testing.assert_close(a[0].raw, a[1].raw)
    assert pearson(a[2].raw, a[3].raw) < 0.999
    assert all(float(m.raw.min()) >= 0 for m in a)


def test_models_without_global_attention_are_refused():
    from torch import nn

    from mikata.models import ModelHandle

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    handle = ModelHandle(cnn, ["a", "b", "c"], input_size=(32, 32))
    for method in ("attention-rollout", "gradient-rollout"):
        with pytest.raises(NoAttentionError, match="no attention layers.*CAM or gradient method"):
            explain(handle, torch.zeros(1, 3, 32, 32), [method])
    swin = tm.swin()
    before = snapshot(swin.model)
    with pytest.raises(AttentionMethodError, match="windowed"):
        explain(swin, _x(swin, 1), ["attention-rollout"])
    assert_untouched(swin.model, before)


# ---------------------------------------------------------------------------- Hugging Face folders
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_vit")
    tm.hf_vit_folder(folder)
    return folder


def test_hf_folder_loads_with_its_processor_and_labels(hf_folder):
    from transformers import ViTForImageClassification

    from mikata.models import load_model

    for spec in (f"hf:{hf_folder}", str(hf_folder)):
        handle = load_model(spec)
        assert handle.class_names == ["cat", "dog", "bird"]
        assert handle.input_size == (64, 64) and handle.interpolation == "bilinear"
        assert handle.mean == pytest.approx((0.5, 0.4, 0.3)) and handle.std == pytest.approx((0.2, 0.25, 0.3))
        assert handle.default_layer == "vit.layers.1.layernorm_before"
        assert handle.layout(handle.default_layer).prefix == 1
    ref = ViTForImageClassification.from_pretrained(str(hf_folder)).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(handle.model(x), ref(pixel_values=x).logits)


def test_hf_vit_attention_methods_match_references(hf_folder):
    """Rollouts on a Hugging Face ViT equal the references computed from the attention weights that
    transformers itself returns (output_attentions=True, eager attention)."""
    from transformers import ViTForImageClassification

    from mikata.models import load_model

    handle = load_model(f"hf:{hf_folder}")
    ref_net = ViTForImageClassification.from_pretrained(str(hf_folder), attn_implementation="eager").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.enable_grad():
        out = ref_net(pixel_values=x, output_attentions=True)
    attns = list(out.attentions)
    before = snapshot(handle.model)
    flags = fused_flags(handle.net)
    ours = explain(handle, x, ["attention-rollout", "gradient-rollout", "gradcam"], targets=[1])
    assert fused_flags(handle.net) == flags
    assert_untouched(handle.model, before)
    roll = _rollout_reference(attns, 1)
    grad = _gradient_rollout_reference(attns, out.logits[:, 1].sum(), 1)
    for g, r in zip(ours[0].raw.flatten(1), roll):
        assert pearson(g, r) >= 0.99
    for g, r in zip(ours[1].raw.flatten(1), grad):
        assert pearson(g, r) >= 0.99


def test_hf_folder_refusals(hf_folder, tmp_path):
    import json
    import shutil

    from mikata.errors import ModelLoadError
    from mikata.models import load_model

    hostile = tmp_path / "hostile"
    shutil.copytree(hf_folder, hostile)
    cfg = json.loads((hostile / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForImageClassification": "evil_modeling.EvilModel"}
    (hostile / "evil_modeling.py").write_text("raise SystemExit('remote code ran')\n")
    (hostile / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="hostile"):
        handle = load_model(f"hf:{hostile}")
        assert type(handle.net).__name__ == "ViTForImageClassification"  # the built-in class, never the file's
        raise ModelLoadError(str(hostile))  # loading as the built-in class is the other acceptable outcome
    pickled = tmp_path / "pickled"
    shutil.copytree(hf_folder, pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(f"hf:{pickled}")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(f"hf:{tmp_path}")


# ------------------------------------------------------------------------- timm / torchvision offline
def test_hub_specs_with_random_or_local_weights(tmp_path):
    from safetensors.torch import save_file

    from mikata.errors import ModelLoadError
    from mikata.models import load_model

    a = load_model("timm:vit_tiny_patch16_224?weights=random")
    b = load_model("timm:vit_tiny_patch16_224?weights=random")
    assert a.spec == "timm:vit_tiny_patch16_224?weights=random" and a.default_layer == "blocks.11.norm1"
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))  # seeded
    state = {k: v.clone() + 1 for k, v in a.net.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    c = load_model(f"timm:vit_tiny_patch16_224?weights={tmp_path / 'w.safetensors'}")
    assert torch.equal(c.net.state_dict()["head.weight"], state["head.weight"])
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(f"timm:vit_tiny_patch16_224?weights={tmp_path / 'missing.pth'}")
    with pytest.raises(ModelLoadError, match="only option"):
        load_model("timm:vit_tiny_patch16_224?pretrained=no")
    tv = load_model("torchvision:resnet18?weights=random")
    assert tv.default_layer == "layer4" and tv.num_classes == 1000


# ------------------------------------------------------------------------------- evaluate on a ViT
def test_evaluate_scores_attention_methods_beside_cam_and_gradients(photos, tmp_path, capsys):
    """`mikata evaluate` on a ViT: the attention methods get the same scorecard rows (deletion / insertion
    against the random order, model randomization, random logit) as Grad-CAM and saliency."""
    import json

    from mikata.cli import main

    methods = ["gradcam", "attention-rollout", "gradient-rollout", "saliency"]
    out = tmp_path / "ev"
    code = main(["-q", "evaluate", "transformer_models:vit", str(photos["chelsea"]), str(photos["coffee"]),
                 "--methods", ",".join(methods), "--checks", "faithfulness,randomization,random-logit",
                 "--out", str(out), "--steps", "4", "--stages", "2", "--seed", "1"])
    assert code == 0
    card = json.loads((out / "scorecard.json").read_text())
    assert card["methods"] == methods and card["images"] == 2
    for m in methods:
        assert set(card["passes"][m]) == {"deletion<random", "insertion>random", "model-randomization", "random-logit"}
        assert card["table"][m]["deletion-auc"] is not None
    # attention rollout is class independent: a random logit cannot change its map
    assert card["passes"]["attention-rollout"]["random-logit"] in (False, None)
