"""Tests import torchvision through the same shim LRP uses (see mikata.attribution._torchvision_compat)."""

from mikata.attribution._torchvision_compat import import_torchvision_declaring_ops

__all__ = ["import_torchvision_declaring_ops"]
