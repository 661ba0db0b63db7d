"""The one place that decides how torchvision is imported (``import_torchvision``).

On a CPU-only torch build, a torchvision wheel whose compiled operators were built for CUDA fails
to import: ``operator torchvision::nms does not exist`` (its Python code registers fake kernels for
operators that its shared library never defined). Image classifiers use none of those operators
(nms, roi_align, roi_pool, deform_conv2d: detection and segmentation heads), so declaring their
schemas — names and signatures, no kernels — lets torchvision, and timm, zennit and transformers'
vision classes that import it, load and run classifiers. Calling a declared operator then fails
with torch's own "no kernel" error, never silently. Where even that import fails, the error says what
to install. ``load_model`` (``torchvision:``/``timm:``/``hf:`` specs), LRP's zennit import and the
tests all come here.

Example:
    >>> tv = import_torchvision()                      # doctest: +SKIP
    >>> tv.models.resnet18(weights=None)               # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from types import ModuleType

import torch

from mikata.errors import ModelLoadError

log = logging.getLogger(__name__)

# torchvision 0.28's operator schemas (torchvision/csrc/ops/*.cpp, TORCH_LIBRARY_FRAGMENT(torchvision, m))
_SCHEMAS = [
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
]
_lib: "torch.library.Library | None" = None  # kept alive: the declarations last as long as it does


def _operators_missing(e: BaseException) -> bool:
    """Whether an import error is torchvision's compiled operators not matching this torch."""
    msg = str(e)
    return "torchvision::" in msg or "does not exist" in msg


def _declare_schemas() -> None:
    """Declare the operators torchvision's shared library should have defined (once per process)."""
    global _lib
    if _lib is not None:
        return
    _lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        name = schema.split("(", 1)[0]
        if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not hasattr(torch.ops.torchvision, name):
            try:
                _lib.define(schema)
            except RuntimeError:  # already defined (a partly working build): keep its own
                pass
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]  # the failed import's half-initialized modules


def _explain(e: BaseException) -> ModelLoadError:
    msg = str(e)
    if _operators_missing(e):
        return ModelLoadError(
            "torchvision is installed but its compiled operators do not match this torch build "
            f"({msg.splitlines()[0] if msg else type(e).__name__}). Install a torchvision built for the installed "
            "torch (pip install torch==2.13.0 torchvision==0.28.0 on a CUDA machine), or use the built-in "
            "efficientnet-lite0/1/2, which need no torchvision.")
    return ModelLoadError(f"torchvision is needed for this model but could not be imported: {msg}")


def import_torchvision() -> ModuleType:
    """torchvision, importable on this torch build or a ``ModelLoadError`` that says what to install.

    Tries the plain import; on the known operator mismatch it declares the operators' schemas and
    imports again (see the module docstring: safe for classifiers)."""
    try:
        import torchvision

        return torchvision
    except (RuntimeError, ImportError, AttributeError) as e:
        if not _operators_missing(e):
            raise _explain(e) from e
        first = e
    _declare_schemas()
    try:
        import torchvision
    except (RuntimeError, ImportError, AttributeError) as e:
        raise _explain(first) from e
    log.info("torchvision's compiled operators do not match this torch build; declared their schemas "
             "(detection operators such as nms will not run; classifiers do not use them)")
    return torchvision


def torchvision_ready() -> None:
    """Make torchvision importable for a library that imports it itself (timm, zennit, transformers'
    vision classes), when it is installed; nothing when it is not (those libraries then do without)."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import_torchvision()
