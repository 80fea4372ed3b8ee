"""Segmentation architectures, a user's own model files, and the output convention they share."""

from segprune.backend.keras_fixes import allow_dynamic_resize, contiguous_torch_cross_entropy
from segprune.models.fcn import fcn
from segprune.models.loading import ModelFileError, load_model, require_graph_model
from segprune.models.mask_rcnn import MaskRCNN, MaskRCNNConfig, load_mask_rcnn, mask_rcnn, save_mask_rcnn, train_mask_rcnn
from segprune.models.mobilenet_unet import mobilenet_unet
from segprune.models.outputs import OutputKind, output_kind
from segprune.models.unet import unet
from segprune.models.vit_segmenter import vit_segmenter

allow_dynamic_resize()  # before any model is built, loaded or run (every such path imports this package)
contiguous_torch_cross_entropy()

ARCHITECTURES = {"unet": unet, "fcn": fcn, "mobilenet-unet": mobilenet_unet, "vit-segmenter": vit_segmenter}


def build_model(architecture: str, num_classes: int, input_channels: int, **options):
    """Builds a named architecture (`"unet"`, `"fcn"`, `"mobilenet-unet"` or `"vit-segmenter"`).

    Example:
        >>> model = build_model("unet", num_classes=2, input_channels=1, base_filters=8)
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}.")
    return ARCHITECTURES[architecture](num_classes=num_classes, input_channels=input_channels, **options)


__all__ = [
    "ARCHITECTURES",
    "MaskRCNN",
    "MaskRCNNConfig",
    "ModelFileError",
    "OutputKind",
    "build_model",
    "fcn",
    "load_mask_rcnn",
    "load_model",
    "mask_rcnn",
    "mobilenet_unet",
    "output_kind",
    "require_graph_model",
    "save_mask_rcnn",
    "train_mask_rcnn",
    "unet",
    "vit_segmenter",
]
