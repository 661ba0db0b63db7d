"""Small random-weight transformers of each family users bring (``load_model("transformer_models:NAME")``).

The same timm / Hugging Face classes as the full models (class and register tokens, distillation
token, windowed and channels-last Swin stages, MaxViT's block and grid attention, EVA's rotary
embeddings and layer scale, BEiT's relative position bias, a conv-stem hybrid), narrower and
shallower so that tests stay fast. Seeded: the same weights every time.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision_compat import import_torchvision_declaring_ops

from mikata.models.handle import ModelHandle
from mikata.models.layers import trace_layers

CLASSES = 10
SIZES = {"maxvit": 128}  # MaxViT's 32x downsampling needs a 4x4 last stage; the others run at 64 px


def _timm():
    import_torchvision_declaring_ops()
    import timm

    return timm


def _seeded(build):
    def factory() -> ModelHandle:
        torch.manual_seed(0)
        net = build().eval()
        size = (SIZES.get(build.__name__, 64),) * 2
        default = next((l.name for l in trace_layers(net, 3, size) if l.is_default), None)
        return ModelHandle(net, [f"class_{i}" for i in range(CLASSES)], input_size=size, crop_fraction=1.0,
                           default_layer=default, spec=f"transformer_models:{build.__name__}")

    factory.__name__ = build.__name__
    return factory


_VIT = dict(img_size=64, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=CLASSES)


@_seeded
def vit():
    _timm()
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**_VIT)


@_seeded
def vit_registers():
    _timm()
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**_VIT, reg_tokens=4)


@_seeded
def deit():
    _timm()
    from timm.models.deit import VisionTransformerDistilled

    return VisionTransformerDistilled(**_VIT)


@_seeded
def swin():
    _timm()
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=24, depths=(2, 2), num_heads=(2, 4),
                           num_classes=CLASSES)


@_seeded
def maxvit():
    return _timm().create_model("maxvit_rmlp_pico_rw_256", pretrained=False, num_classes=CLASSES, img_size=128)


@_seeded
def eva():
    _timm()
    from timm.models.eva import Eva

    return Eva(img_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=3, use_rot_pos_emb=True,
               ref_feat_shape=(8, 8), init_values=0.1, num_classes=CLASSES)


@_seeded
def beit():
    _timm()
    from timm.models.beit import Beit

    return Beit(img_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=3, use_rel_pos_bias=True,
                init_values=0.1, num_classes=CLASSES)


@_seeded
def hybrid():
    """A ViT on a conv stem (as timm's R26+ViT hybrids): a 4x-downsampling conv stack, then 2x2 patches."""
    _timm()
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())

    def embed(**kw):
        return HybridEmbed(stem, img_size=kw["img_size"], patch_size=2, in_chans=3, embed_dim=kw["embed_dim"])

    return VisionTransformer(**_VIT | {"patch_size": 8}, embed_layer=embed)


def hf_vit_folder(folder) -> None:
    """Save a small Hugging Face ``ViTForImageClassification`` (random weights, seeded) with its image
    processor to ``folder``: what a user's fine-tuned checkpoint folder holds."""
    import_torchvision_declaring_ops()  # transformers' vision classes import torchvision
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = ["cat", "dog", "bird"]
    cfg = ViTConfig(image_size=64, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                    intermediate_size=96, num_labels=3, id2label=dict(enumerate(labels)),
                    label2id={n: i for i, n in enumerate(labels)})
    ViTForImageClassification(cfg).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3],
                      resample=2).save_pretrained(folder)


TRANSFORMERS = ("vit", "vit_registers", "deit", "swin", "maxvit", "eva", "beit", "hybrid")
