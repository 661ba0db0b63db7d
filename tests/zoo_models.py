"""Small random-weight versions of the architectures users bring (for ``load_model("zoo_models:NAME")``).

Same building blocks as the full torchvision / timm models (functional and in-place ReLUs, ReLU6,
hardswish and SE gates, GELU and LayerNorm, concatenations, max pooling, conv classifiers), fewer or
narrower blocks so the model-zoo matrix stays fast. Seeded: the same weights every time.
"""

from __future__ import annotations

import torch
from torch import nn

from mikata.models.handle import ModelHandle
from mikata.models.layers import trace_layers
from torchvision_compat import import_torchvision_declaring_ops as import_torchvision

CLASSES = 10


SIZES = {"inception_v3": 80}  # Inception v3 needs at least 75 px; the others run at 64


def _seeded(build):
    def factory() -> ModelHandle:
        torch.manual_seed(0)
        net = build()
        with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is not an identity
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        net.eval()
        size = (SIZES.get(build.__name__, 64),) * 2
        # the default CAM layer as the loader chooses it at the test's small input size: the last stage
        # whose map keeps >= 4x4 cells (at the architectures' own 224 / 299 px it is the last block)
        default = next((l.name for l in trace_layers(net, 3, size) if l.is_default), None)
        return ModelHandle(net, [f"class_{i}" for i in range(CLASSES)], input_size=size, default_layer=default,
                           spec=f"zoo_models:{build.__name__}")

    factory.__name__ = build.__name__
    return factory


@_seeded
def googlenet():
    tv = import_torchvision()
    return tv.models.GoogLeNet(num_classes=CLASSES, aux_logits=False, transform_input=False, init_weights=False)


@_seeded
def squeezenet1_1():
    return import_torchvision().models.squeezenet1_1(num_classes=CLASSES)


@_seeded
def densenet():
    tv = import_torchvision()
    return tv.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2,
                              num_classes=CLASSES)


@_seeded
def mobilenet_v3_large():
    return import_torchvision().models.mobilenet_v3_large(num_classes=CLASSES, width_mult=0.25)


@_seeded
def convnext():
    tv = import_torchvision()
    from torchvision.models.convnext import CNBlockConfig

    blocks = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 128, 1), CNBlockConfig(128, None, 1)]
    return tv.models.ConvNeXt(blocks, num_classes=CLASSES)


@_seeded
def resnet50():
    tv = import_torchvision()
    from torchvision.models.resnet import Bottleneck

    return tv.models.ResNet(Bottleneck, [1, 1, 1, 1], num_classes=CLASSES, width_per_group=16)


@_seeded
def inception_v3():
    return import_torchvision().models.Inception3(num_classes=CLASSES, aux_logits=False, init_weights=False)


@_seeded
def vgg16():
    tv = import_torchvision()
    from torchvision.models.vgg import make_layers

    cfg = [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64, "M"]
    net = tv.models.VGG(make_layers(cfg, batch_norm=False), num_classes=CLASSES, init_weights=False)
    net.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    net.classifier = nn.Sequential(nn.Linear(64 * 4, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                   nn.ReLU(True), nn.Dropout(), nn.Linear(64, CLASSES))
    return net


@_seeded
def efficientnet_b0():
    import_torchvision()
    import timm

    return timm.create_model("efficientnet_b0", num_classes=CLASSES)
