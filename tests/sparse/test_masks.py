"""Mask computation: exact counts per layer and globally, N:M groups, blocks."""

import keras
import numpy as np
import pytest

from segprune.models import mobilenet_unet, unet
from segprune.sparse.masks import KernelSite, Pattern, compute_masks, prunable_kernels


def _kernels(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 3, 8, 16)).astype("float32"), rng.normal(scale=5.0, size=(16, 4)).astype("float32")]


SITES = [KernelSite("conv", "kernel", -2), KernelSite("dense", "kernel", -2)]


def test_layer_ranking_removes_exactly_the_share_of_each_kernel_and_the_smallest_ones():
    kernels = _kernels()
    masks = [keras.ops.convert_to_numpy(m) for m in compute_masks(kernels, SITES, 0.75, "layer")]
    for kernel, mask in zip(kernels, masks):
        assert mask.sum() == kernel.size - round(0.75 * kernel.size)
        assert np.abs(kernel[mask == 1]).min() >= np.abs(kernel[mask == 0]).max()


def test_global_ranking_spares_the_kernel_with_larger_weights():
    kernels = _kernels()
    masks = [keras.ops.convert_to_numpy(m) for m in compute_masks(kernels, SITES, 0.75, "global")]
    total = sum(k.size for k in kernels)
    assert sum(m.sum() for m in masks) == total - round(0.75 * total)
    assert masks[1].mean() > masks[0].mean()


def test_two_of_four_keeps_the_two_largest_of_every_four_inputs():
    kernel = _kernels()[0]
    mask = keras.ops.convert_to_numpy(compute_masks([kernel], SITES[:1], 0.0, pattern=Pattern.parse("2:4"))[0])
    groups = np.moveaxis(mask, 2, -1).reshape(-1, 4)
    assert np.all(groups.sum(axis=1) == 2)
    values = np.abs(np.moveaxis(kernel, 2, -1).reshape(-1, 4))
    assert np.all(np.sort(values * groups, axis=1)[:, 2:] == np.sort(values, axis=1)[:, 2:])


def test_n_of_m_leaves_kernels_it_does_not_fit_dense():
    pattern = Pattern.parse("2:4")
    odd = np.ones((3, 3, 3, 8), "float32")
    assert not pattern.fits(SITES[0], odd.shape)
    assert keras.ops.convert_to_numpy(compute_masks([odd], SITES[:1], 0.0, pattern=pattern)[0]).all()


def test_blocks_are_removed_whole():
    kernel = _kernels()[0]
    mask = keras.ops.convert_to_numpy(compute_masks([kernel], SITES[:1], 0.5, pattern=Pattern.parse("block:1x4"))[0])
    rows = mask.reshape(-1, 16).reshape(-1, 4, 4)  # (rows, blocks, 4)
    assert np.all(rows.min(axis=2) == rows.max(axis=2))
    assert mask.mean() == pytest.approx(0.5)


@pytest.mark.parametrize("text", ["3:2", "x:4", "block:0x4", "block:4"])
def test_bad_patterns_are_explained(text):
    with pytest.raises(ValueError, match="pattern|Pattern"):
        Pattern.parse(text)


def test_prunable_kernels_cover_every_kernel_kind_and_respect_ignore():
    model = unet(base_filters=8, depth=2)
    sites = prunable_kernels(model, ignore=["head_logits"])
    names = {site.layer for site in sites}
    assert "dec0_up" in names and "enc0a_conv" in names and "head_logits" not in names
    assert next(s for s in sites if s.layer == "dec0_up").reduction_axis == -1  # transposed conv: (kh, kw, out, in)
    nested = prunable_kernels(mobilenet_unet(alpha=0.35))
    assert any("/" in s.layer and s.reduction_axis is None for s in nested), "depthwise kernels inside the encoder"
