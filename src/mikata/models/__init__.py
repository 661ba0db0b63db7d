"""Loading classifiers, listing their layers, saving checkpoints."""

from mikata.models.handle import LogitsModel, ModelHandle, extract_logits
from mikata.models.layers import LayerInfo, format_layer_table, spatial_layers, trace_layers
from mikata.models.torchvision_ops import import_torchvision
from mikata.models.loading import (
    build_architecture,
    imagenet_class_names,
    load_checkpoint,
    load_model,
    read_checkpoint_metadata,
    replace_head,
    save_checkpoint,
)


def list_layers(handle: ModelHandle) -> list[LayerInfo]:
    """Every layer of ``handle.net`` with type, output shape and parameters; the default is marked.

    Example:
        >>> layers = mikata.list_layers(handle)
        >>> [(layer.name, layer.output_shape) for layer in layers if layer.is_default]
        [('head', (1280, 7, 7))]
    """
    layers = trace_layers(handle.net, handle.in_channels, handle.input_size)
    for layer in layers:
        layer.is_default = layer.name == handle.default_layer
    return layers


__all__ = [
    "LayerInfo", "LogitsModel", "ModelHandle", "build_architecture", "extract_logits", "format_layer_table",
    "imagenet_class_names", "import_torchvision", "list_layers", "load_checkpoint", "load_model",
    "read_checkpoint_metadata", "replace_head", "save_checkpoint", "spatial_layers", "trace_layers",
]
