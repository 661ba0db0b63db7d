"""Tests import torchvision through mikata's one torchvision policy (``mikata.models.torchvision_ops``)."""

from mikata.models.torchvision_ops import import_torchvision as import_torchvision_declaring_ops

__all__ = ["import_torchvision_declaring_ops"]
