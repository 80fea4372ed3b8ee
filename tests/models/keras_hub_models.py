"""keras-hub image models at tiny random-weight configurations (no presets can be downloaded), one builder per
class of its image segmentation, object detection and image backbone families."""

from __future__ import annotations

import keras_hub

M = keras_hub.models
SHAPE = (32, 32, 3)


def _resnet(image_shape=SHAPE, stages=2):
    # keras-hub's ResNet insists on 64 first filters.
    return M.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64] + [16] * (stages - 1),
        stackwise_num_blocks=[1] * stages, stackwise_num_strides=[1] + [2] * (stages - 1), block_type="basic_block",
        use_pre_activation=False, image_shape=image_shape,
    )


def _mit(image_shape=SHAPE):
    return M.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2], layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[3, 3], layerwise_strides=[2, 2], image_shape=image_shape, hidden_dims=[8, 16],
    )


def _vgg():
    return M.VGGBackbone(stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16], image_shape=SHAPE)


def _densenet():
    return M.DenseNetBackbone(stackwise_num_repeats=[1, 1], growth_rate=8, image_shape=SHAPE)


def _xception():
    return M.XceptionBackbone(
        stackwise_conv_filters=[[8, 16], [32, 32], [32, 32]], stackwise_pooling=[False, True, False], image_shape=SHAPE
    )


def _cspnet():
    return M.CSPNetBackbone(
        stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1], stackwise_strides=[1, 2],
        stackwise_num_filters=[8, 16], block_type="dark_block", stage_type="dark", image_shape=SHAPE,
    )


def _mobilenet():
    return M.MobileNetBackbone(
        stackwise_expansion=[[16], [24]], stackwise_num_blocks=[1, 1], stackwise_num_filters=[[8], [16]],
        stackwise_kernel_size=[[3], [3]], stackwise_num_strides=[[2], [2]], stackwise_se_ratio=[[None], [0.25]],
        stackwise_activation=[["relu"], ["hard_swish"]], stackwise_padding=[[1], [1]], output_num_filters=32,
        depthwise_filters=8, depthwise_stride=2, depthwise_residual=False, last_layer_filter=32, input_num_filters=8,
        image_shape=SHAPE,
    )


def _efficientnet():
    return M.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1], stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 4], stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
        stackwise_strides=[1, 2], stackwise_block_types=["fused", "unfused"], width_coefficient=1.0, depth_coefficient=1.0,
        stackwise_force_input_filters=[0, 0], stackwise_nores_option=[False, False], input_shape=SHAPE,
    )


def _hgnetv2():
    return M.HGNetV2Backbone(
        depths=[1, 1], embedding_size=8, hidden_sizes=[16, 32], stem_channels=[3, 8, 8], hidden_act="relu",
        use_learnable_affine_block=False, stackwise_stage_filters=[(8, 8, 16, 1, 1, 3), (16, 8, 32, 1, 1, 3)],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, False], image_shape=SHAPE,
    )


def _vit():
    return M.ViTBackbone(image_shape=SHAPE, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)


def _deit():
    return M.DeiTBackbone(image_shape=SHAPE, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)


def _dinov2():
    return M.DINOV2Backbone(
        patch_size=8, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16, image_shape=SHAPE, position_embedding_shape=SHAPE
    )


def _swin():
    return M.SwinTransformerBackbone(image_shape=SHAPE, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4, patch_size=2)


def _vitdet():
    return M.ViTDetBackbone(
        hidden_size=8, num_layers=1, intermediate_dim=16, num_heads=2, global_attention_layer_indices=[0], image_shape=SHAPE,
        patch_size=8, num_output_channels=8, window_size=2,
    )


def _deeplab():
    backbone = M.DeepLabV3Backbone(
        image_encoder=_resnet(), low_level_feature_key="P2", spatial_pyramid_pooling_key="P3", dilation_rates=[2],
        upsampling_size=2, image_shape=SHAPE,
    )
    return backbone


def _segformer_backbone():
    return M.SegFormerBackbone(image_encoder=_mit(), projection_filters=8)


def _basnet_backbone():
    return M.BASNetBackbone(image_encoder=_resnet((None, None, 3), stages=4), num_classes=1, image_shape=SHAPE, projection_filters=64)


def _retinanet_backbone():
    return M.RetinaNetBackbone(image_encoder=_resnet(), min_level=3, max_level=4, use_p5=False, image_shape=SHAPE)


BUILDERS = {
    "ResNetBackbone": _resnet,
    "MiTBackbone": _mit,
    "VGGBackbone": _vgg,
    "DenseNetBackbone": _densenet,
    "XceptionBackbone": _xception,
    "CSPNetBackbone": _cspnet,
    "MobileNetBackbone": _mobilenet,
    "EfficientNetBackbone": _efficientnet,
    "HGNetV2Backbone": _hgnetv2,
    "ViTBackbone": _vit,
    "DeiTBackbone": _deit,
    "DINOV2Backbone": _dinov2,
    "SwinTransformerBackbone": _swin,
    "ViTDetBackbone": _vitdet,
    "DeepLabV3Backbone": _deeplab,
    "SegFormerBackbone": _segformer_backbone,
    "BASNetBackbone": _basnet_backbone,
    "RetinaNetBackbone": _retinanet_backbone,
    "DeepLabV3ImageSegmenter": lambda: M.DeepLabV3ImageSegmenter(backbone=_deeplab(), num_classes=2),
    "SegFormerImageSegmenter": lambda: M.SegFormerImageSegmenter(backbone=_segformer_backbone(), num_classes=2),
    "BASNetImageSegmenter": lambda: M.BASNetImageSegmenter(backbone=_basnet_backbone()),
    "RetinaNetObjectDetector": lambda: M.RetinaNetObjectDetector(
        backbone=_retinanet_backbone(), num_classes=2, pre_logits_num_conv_layers=1
    ),
}
