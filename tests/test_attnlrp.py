"""AttnLRP: agreement with a slow reference written from the paper on a two-block toy transformer,
conservation on timm ViT / DeiT (random weights), refusals, model state untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attribution_helpers import assert_untouched, snapshot
from torch import nn

from mikata.attribution import explain
from mikata.attribution.lrp import LRPUnsupportedError
from mikata.models.handle import ModelHandle

EPS = 1e-6
P, D, HEADS, SIZE = 4, 16, 2, 8  # 4x4 patches of an 8x8 image: 4 patch tokens + the class token


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.attn_drop = nn.Identity()
        self.fused_attn = True  # as timm: the method must turn it off (the matrix is needed) and restore it
        self.scale = (D // HEADS) ** -0.5

    def forward(self, x):
        n, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            a = self.attn_drop((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))
            o = a @ v
        return self.proj(o.transpose(1, 2).reshape(n, t, D))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = Attention()
        self.fc1, self.act, self.fc2 = nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, P, stride=P)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D))
        self.pos_embed = nn.Parameter(torch.randn(1, 4, D))
        self.blocks = nn.Sequential(Block(), Block())
        self.norm, self.head = nn.LayerNorm(D), nn.Linear(D, 5)

    def forward(self, img):
        x = self.patch(img).flatten(2).transpose(1, 2) + self.pos_embed  # (N, 4, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(self.norm(self.blocks(x))[:, 0])


def _toy() -> Toy:
    torch.manual_seed(0)
    net = Toy().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


# ------------------------------------------------------------ the slow reference: explicit rules, no autograd
def _stab(z):
    return z + EPS * torch.where(z >= 0, 1.0, -1.0)


def _linear(x, lin, r):  # epsilon rule: R_i = x_i * sum_j W_ji R_j / z_j
    z = x @ lin.weight.T + lin.bias
    return x * ((r / _stab(z)) @ lin.weight)


def _layernorm(x, ln, r):  # std held constant; epsilon rule on the rest, written out with its Jacobian
    d = x.shape[-1]
    std = (x.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
    y = (x - x.mean(-1, keepdim=True)) / std * ln.weight + ln.bias
    centre = torch.eye(d) - torch.full((d, d), 1.0 / d)  # d(x - mean)/dx
    jac = centre[None, None] * (ln.weight[:, None] / std[..., None])  # (N, T, d_out, d_in)
    return x * torch.einsum("ntoi,nto->nti", jac, r / _stab(y))


def _add(a, b, r):
    z = _stab(a + b)
    return a * r / z, b * r / z


def _attention(x, m, r):
    n, t, _ = x.shape
    qkv = x @ m.qkv.weight.T + m.qkv.bias
    q, k, v = qkv.reshape(n, t, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4).unbind(0)  # (N, H, T, d)
    s = (q * m.scale) @ k.transpose(-2, -1)  # (N, H, T, T)
    a = s.softmax(-1)
    o = a @ v
    r_o = _linear(o.transpose(1, 2).reshape(n, t, D), m.proj, r).reshape(n, t, HEADS, -1).transpose(1, 2)
    r_a, r_v = torch.zeros_like(a), torch.zeros_like(v)
    for i in range(t):  # the uniform rule term by term: half of a_ij v_jd r_id / o_id to each factor
        for j in range(t):
            term = a[..., i, j, None] * v[..., j, :] * r_o[..., i, :] / (2 * _stab(o[..., i, :]))
            r_a[..., i, j] += term.sum(-1)
            r_v[..., j, :] += term
    r_s = s * (r_a - a * r_a.sum(-1, keepdim=True))  # softmax: x * (R - s * sum R)
    qs = q * m.scale
    r_q, r_k = torch.zeros_like(q), torch.zeros_like(k)
    for i in range(t):
        for j in range(t):
            term = qs[..., i, :] * k[..., j, :] * r_s[..., i, j, None] / (2 * _stab(s[..., i, j, None]))
            r_q[..., i, :] += term
            r_k[..., j, :] += term
    r_qkv = torch.stack([r_q, r_k, r_v]).permute(1, 3, 0, 2, 4).reshape(n, t, 3 * D)
    return _linear(x, m.qkv, r_qkv)


def _reference(net: Toy, img: torch.Tensor, target: int) -> torch.Tensor:
    with torch.no_grad():
        emb = net.patch(img).flatten(2).transpose(1, 2)
        x0 = torch.cat([net.cls_token.expand(img.shape[0], -1, -1), emb + net.pos_embed], 1)
        states = [x0]
        for blk in net.blocks:
            h = states[-1]
            mid = h + blk.attn(blk.norm1(h))
            states += [mid, mid + blk.fc2(blk.act(blk.fc1(blk.norm2(mid))))]
        last = net.norm(states[-1])
        r = torch.zeros(img.shape[0], 5)
        r[:, target] = 1.0
        r_tok = torch.zeros_like(last)
        r_tok[:, 0] = _linear(last[:, 0], net.head, r)
        r = _layernorm(states[-1], net.norm, r_tok)
        for b, blk in reversed(list(enumerate(net.blocks))):
            h, mid = states[2 * b], states[2 * b + 1]
            ffn_in = blk.norm2(mid)
            hidden = blk.fc1(ffn_in)
            ffn = blk.fc2(blk.act(hidden))
            r_mid, r_ffn = _add(mid, ffn, r)
            r_hidden = _linear(blk.act(hidden), blk.fc2, r_ffn)  # GELU: identity
            r_mid = r_mid + _layernorm(mid, blk.norm2, _linear(ffn_in, blk.fc1, r_hidden))
            att = blk.attn(blk.norm1(h))
            r_h, r_att = _add(h, att, r_mid)
            r = r_h + _layernorm(h, blk.norm1, _attention(blk.norm1(h), blk.attn, r_att))
        r_emb, _ = _add(emb, net.pos_embed.expand_as(emb), r[:, 1:])  # the position embedding: a bias
        # the patch convolution as a linear layer on unfolded patches
        cols = F.unfold(img, P, stride=P).transpose(1, 2)  # (N, 4, 3*P*P)
        w = net.patch.weight.reshape(D, -1)
        z = cols @ w.T + net.patch.bias
        r_cols = cols * ((r_emb / _stab(z)) @ w)
        return F.fold(r_cols.transpose(1, 2), (SIZE, SIZE), P, stride=P)


def test_attnlrp_equals_the_slow_reference_on_a_two_block_toy_transformer():
    net = _toy()
    handle = ModelHandle(net, [str(i) for i in range(5)], input_size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1))
    img = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    before = snapshot(handle.model)
    a = explain(handle, img, ["attnlrp"], targets=3)[0]
    assert_untouched(handle.model, before)
    assert all(m.fused_attn for m in net.modules() if isinstance(m, Attention))  # flags restored
    ref = _reference(net, img, 3)
    torch.testing.assert_close(a.raw, ref, rtol=1e-3, atol=1e-6 * float(ref.abs().max()))
    assert abs(a.info["conservation"] - 1) < 1e-3
    assert a.signed


# Conservation is an identity of the rules, whatever the token count: the models run at small inputs (ViT / DeiT
# 64 px, 4x4 patches; Swin 112 px, three stages of 28, 14 and 7 tokens a side with 7x7 windows, so the first two
# shift their windows under the attention mask and the last is one window, as the 224 px model's last stage).
@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_patch16_224", {"depth": 2, "img_size": 64}),
    ("deit_tiny_distilled_patch16_224", {"depth": 2, "img_size": 64}),  # two constant tokens, the head averages two
    pytest.param("swin_tiny_patch4_window7_224", {"depths": (2, 2, 2), "embed_dim": 32, "num_heads": (1, 2, 4),
                                                  "img_size": 112},
                 marks=pytest.mark.slow),  # windows, shifted masks, relative position bias, patch merging
])
def test_attnlrp_conserves_relevance_on_timm_vit_deit_and_swin(name, kwargs, torchvision):
    """With the biases left out, what reaches the pixels plus what the softmax rules and the constant
    tokens absorbed is the seed (1), per image; the flags and the model are as they were."""
    from test_attribution_zoo_cnn import timm_handle

    from mikata.attribution.attnlrp import attnlrp
    from mikata.models.attention import fused_flags

    size = kwargs["img_size"]
    handle = timm_handle(name, size, **kwargs)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    flags, before = fused_flags(handle.net), snapshot(handle.model)
    a = explain(handle, x, ["attnlrp"], targets="top2")
    assert fused_flags(handle.net) == flags  # turned off for the call (ViT, DeiT: on by default), then restored
    assert any(flags.values()) != name.startswith("swin")  # timm leaves Swin unfused: its window mask
    assert_untouched(handle.model, before)
    assert abs(a[0].info["conservation"] - 1) < 1e-3 and torch.isfinite(a[0].raw).all()
    for i in range(2):  # every image and the second rank, not only the first image and rank the call checks
        _, info = attnlrp(handle, x[i:i + 1], torch.tensor([a[1].targets[i:i + 1]]).T)
        assert abs(info["conservation"] - 1) < 1e-3


def test_attnlrp_refuses_a_cnn_and_fused_torch_attention(torchvision):
    from mikata.models import load_model
    from mikata.models.attention import NoAttentionError

    cnn = load_model("zoo_models:resnet50")
    with pytest.raises(NoAttentionError, match="no attention layer.*use lrp"):
        explain(cnn, torch.randn(1, 3, 64, 64), ["attnlrp"])
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    handle = ModelHandle(net, [str(i) for i in range(10)], input_size=(32, 32))
    before = snapshot(handle.model)
    with pytest.raises(LRPUnsupportedError, match="fused call .*multi_head_attention_forward.*model is unchanged"):
        explain(handle, torch.randn(1, 3, 32, 32), ["attnlrp"])
    assert_untouched(handle.model, before)
