"""Which weights magnitude pruning keeps: unstructured, N:M and block patterns, ranked per layer or globally.

Everything is `keras.ops`, so mask updates run on whatever backend trains the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from segprune.backend._keras_internals import leaf_layers
from segprune.graph.registry import pricing_handler

RANKINGS = ("layer", "global")


@dataclass(frozen=True)
class KernelSite:
    """A prunable kernel: its layer's qualified name, the weight name, and the axis its layer sums over
    per output (the axis N:M groups run along; None where the layer has none, as in depthwise kernels)."""

    layer: str
    weight: str
    reduction_axis: int | None


def prunable_kernels(model: keras.Model, ignore: Sequence[str] = ()) -> list[KernelSite]:
    """The kernels each layer's handler offers to magnitude pruning (those of Conv1D/2D, Conv2DTranspose,
    DepthwiseConv2D, SeparableConv2D and Dense layers among the built-in ones).

    Example:
        >>> [site.layer for site in prunable_kernels(model)][:2]
        ['enc0a_conv', 'enc0b_conv']
    """
    sites = []
    ignored = set(ignore)
    for path, layer in leaf_layers(model):
        name = "/".join((*path, layer.name))
        if ignored & {name, layer.name} or not layer.weights:
            continue
        sites += [KernelSite(name, weight, axis) for weight, axis in pricing_handler(layer).sparse_kernels(layer)]
    if not sites:
        raise ValueError(
            f"Model {model.name!r} has no kernels to prune: none of its layers is a Conv1D/2D, Conv2DTranspose, DepthwiseConv2D, "
            "SeparableConv2D or Dense layer, or a layer whose handler lists sparse kernels."
        )
    return sites


@dataclass(frozen=True)
class Pattern:
    """The shape of what is removed together.

    Attributes:
        kind: `"unstructured"` (single weights), `"n:m"` (keep the N largest of every M consecutive weights
            along the reduction axis; sparsity is fixed at 1 - N/M) or `"block"` (blocks of `block` weights
            of the kernel viewed as a (inputs x outputs) matrix, ranked by mean magnitude).
        n, m: For N:M.
        block: (rows, columns) for blocks.
    """

    kind: str = "unstructured"
    n: int = 2
    m: int = 4
    block: tuple[int, int] = (1, 4)

    @classmethod
    def parse(cls, text: str | None) -> Pattern:
        """`None` or "unstructured"; "2:4" for N:M; "block:1x4" for blocks."""
        if text in (None, "", "unstructured"):
            return cls()
        if text.startswith("block:"):
            rows, _, cols = text[len("block:") :].partition("x")
            if not (rows.isdigit() and cols.isdigit()) or int(rows) < 1 or int(cols) < 1:
                raise ValueError(f"A block pattern reads block:ROWSxCOLS, e.g. block:1x4; got {text!r}.")
            return cls("block", block=(int(rows), int(cols)))
        n, _, m = text.partition(":")
        if not (n.isdigit() and m.isdigit()) or not 0 < int(n) < int(m):
            raise ValueError(f"Pattern {text!r} is not 'unstructured', 'N:M' with 0 < N < M (e.g. 2:4), or 'block:RxC'.")
        return cls("n:m", n=int(n), m=int(m))

    def fits(self, site: KernelSite, shape: tuple[int, ...]) -> bool:
        """Whether the pattern applies to a kernel of this shape (N:M needs the reduction axis divisible by M)."""
        if self.kind != "n:m":
            return True
        return site.reduction_axis is not None and shape[site.reduction_axis] % self.m == 0


def _rank_keep(scores, num_removed: int):
    """1 for entries whose score ranks above the `num_removed` lowest, else 0 (ties broken by position)."""
    flat = ops.reshape(scores, (-1,))
    ranks = ops.argsort(ops.argsort(flat))
    return ops.cast(ranks >= num_removed, "float32")


def _block_scores(weight, block: tuple[int, int]):
    """Mean |w| per block of the (prod(shape[:-1]) x shape[-1]) matrix view, and the padded matrix shape."""
    rows, cols = block
    matrix = ops.reshape(ops.abs(weight), (-1, weight.shape[-1]))
    height, width = matrix.shape
    padded_h, padded_w = -(-height // rows) * rows, -(-width // cols) * cols
    matrix = ops.pad(matrix, ((0, padded_h - height), (0, padded_w - width)))
    blocks = ops.reshape(matrix, (padded_h // rows, rows, padded_w // cols, cols))
    return ops.mean(blocks, axis=(1, 3))


def _expand_blocks(keep, block: tuple[int, int], shape: tuple[int, ...]):
    rows, cols = block
    height = int(np.prod(shape[:-1]))
    expanded = ops.repeat(ops.repeat(keep, rows, axis=0), cols, axis=1)[:height, : shape[-1]]
    return ops.reshape(expanded, shape)


def _n_of_m(weight, site: KernelSite, n: int, m: int):
    axis = site.reduction_axis % len(weight.shape)
    moved = ops.moveaxis(ops.abs(weight), axis, -1)
    moved_shape = moved.shape
    groups = ops.reshape(moved, (-1, m))
    ranks = ops.argsort(ops.argsort(groups, axis=-1), axis=-1)
    keep = ops.cast(ranks >= m - n, "float32")
    return ops.moveaxis(ops.reshape(keep, moved_shape), -1, axis)


def compute_masks(weights: Sequence, sites: Sequence[KernelSite], sparsity: float, ranking: str = "layer", pattern: Pattern | None = None) -> list:
    """One 0/1 mask per weight that removes `sparsity` of the weights (per layer or over all of them).

    With an N:M pattern every mask has its fixed N:M sparsity and `sparsity` and `ranking` are unused;
    kernels the pattern does not fit stay dense.

    Example:
        >>> masks = compute_masks([kernel], [KernelSite("conv", "kernel", -2)], sparsity=0.9)
    """
    pattern = pattern or Pattern()
    if ranking not in RANKINGS:
        raise ValueError(f"Unknown ranking {ranking!r}; choose one of {list(RANKINGS)}.")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}.")
    if pattern.kind == "n:m":
        return [
            _n_of_m(weight, site, pattern.n, pattern.m) if pattern.fits(site, tuple(weight.shape)) else ops.ones(weight.shape)
            for weight, site in zip(weights, sites)
        ]
    if pattern.kind == "block":
        unit_scores = [_block_scores(weight, pattern.block) for weight in weights]
    else:
        unit_scores = [ops.abs(ops.convert_to_tensor(weight)) for weight in weights]
    if ranking == "layer":
        keeps = [ops.reshape(_rank_keep(s, int(round(sparsity * int(np.prod(s.shape))))), s.shape) for s in unit_scores]
    else:
        flat = ops.concatenate([ops.reshape(s, (-1,)) for s in unit_scores], axis=0)
        keep_all = _rank_keep(flat, int(round(sparsity * int(flat.shape[0]))))
        sizes = [int(np.prod(s.shape)) for s in unit_scores]
        splits = ops.split(keep_all, np.cumsum(sizes)[:-1].tolist()) if len(sizes) > 1 else [keep_all]
        keeps = [ops.reshape(k, s.shape) for k, s in zip(splits, unit_scores)]
    if pattern.kind == "block":
        return [_expand_blocks(keep, pattern.block, tuple(weight.shape)) for keep, weight in zip(keeps, weights)]
    return keeps
