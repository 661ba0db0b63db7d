"""Loading classifiers, listing their layers, saving checkpoints.

The names below are imported on first use (mikata.lazy): ``mikata.models.precheck`` and
``classes`` check what a user typed without torch, so a command that refuses bad arguments, or one
that never builds a model (compare, audit), does not pay torch's import through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mikata.lazy import lazy_names

if TYPE_CHECKING:
    from mikata.models.handle import LogitsModel, ModelHandle
    from mikata.models.layers import LayerInfo, format_layer_table, spatial_layers, trace_layers
    from mikata.models.loading import (
        build_architecture,
        imagenet_class_names,
        load_checkpoint,
        load_model,
        read_checkpoint_metadata,
        replace_head,
        save_checkpoint,
    )
    from mikata.models.outputs import extract_logits
    from mikata.models.torchvision_ops import import_torchvision

# public name -> module, imported on first use (mikata.lazy)
_NAMES = {
    "LogitsModel": "mikata.models.handle", "ModelHandle": "mikata.models.handle",
    "extract_logits": "mikata.models.outputs",
    "LayerInfo": "mikata.models.layers", "format_layer_table": "mikata.models.layers",
    "spatial_layers": "mikata.models.layers", "trace_layers": "mikata.models.layers",
    "import_torchvision": "mikata.models.torchvision_ops",
    **{name: "mikata.models.loading" for name in ("build_architecture", "imagenet_class_names", "load_checkpoint",
                                                  "load_model", "read_checkpoint_metadata", "replace_head",
                                                  "save_checkpoint")},
}


def list_layers(handle: ModelHandle) -> list[LayerInfo]:
    """Every layer of ``handle.net`` with type, output shape and parameters; the default is marked.

    Example:
        >>> layers = mikata.list_layers(handle)
        >>> [(layer.name, layer.output_shape) for layer in layers if layer.is_default]
        [('head', (1280, 7, 7))]
    """
    from mikata.models.layers import trace_layers

    layers = trace_layers(handle.net, handle.in_channels, handle.input_size)
    for layer in layers:
        layer.is_default = layer.name == handle.default_layer
    return layers


__all__ = [
    "LayerInfo", "LogitsModel", "ModelHandle", "build_architecture", "extract_logits", "format_layer_table",
    "imagenet_class_names", "import_torchvision", "list_layers", "load_checkpoint", "load_model",
    "read_checkpoint_metadata", "replace_head", "save_checkpoint", "spatial_layers", "trace_layers",
]


__getattr__, __dir__ = lazy_names(__name__, _NAMES)
