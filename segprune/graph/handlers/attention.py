"""Attention: layouts that split channels into heads (reshape, transpose), what joins them (matmul, einsum,
fused dot-product attention), the EinsumDense projections, softmax and reductions over any axis."""

from __future__ import annotations

import copy
import math
import weakref

import numpy as np

from segprune.graph.handlers.base import (
    ChannelAxis,
    ChannelBuilder,
    ChannelHandler,
    UnsupportedLayerError,
    is_last_axis,
    mixes_channels,
    on_last_axis,
    weight_shape,
)


class ReshapeHandler(ChannelHandler):
    """Reshape (the layer, or `keras.ops.reshape` in functional code) of three kinds:

    * the channel axis stays last and whole: tokens <-> image in transformers, (C,) -> (1, 1, C) in
      squeeze-excitation;
    * the channel axis is split into (heads, head size), as attention does: a head's channels are one class,
      so whole heads are pruned and every head keeps its size;
    * the last two axes (heads, head size) are merged back into channels.

    `shape_key` names the config entry holding the target shape ("target_shape" for the layer, batch
    excluded; "newshape" for the op, batch included).
    """

    def __init__(self, shape_key: str = "target_shape") -> None:
        self.shape_key = shape_key
        self._regrouped: weakref.WeakSet = weakref.WeakSet()  # reshapes of the fourth kind below, for the surgery

    def couple_layout(self, call, inputs, builder):
        before, after, elements = call.input_shapes[0], call.output_shapes[0], inputs[0]
        kind = _reshape_kind(before, after, elements)
        if kind == "other":
            regrouped = _regrouped(call, elements, builder)
            if regrouped is not None:
                self._regrouped.add(call.layer)
                return [regrouped]
        if kind == "keep":
            return [on_last_axis(elements.ravel(), len(after))]
        if kind == "split":
            heads = elements.reshape(after[-2], after[-1])
            for head in heads:
                builder.union([int(e) for e in head[1:]], [int(head[0])] * (len(head) - 1))
            return [heads.reshape((1,) * (len(after) - 3) + heads.shape)]
        if kind == "merge":
            return [on_last_axis(elements.ravel(), len(after))]
        raise UnsupportedLayerError(
            f"Layer {call.layer.name!r} (Reshape) changes the channel axis {before} -> {after}; segprune can "
            "prune only reshapes that keep the last axis, split it into (heads, head size) or merge those back. "
            "Mark it with ignore=[...] or register a handler."
        )

    def edit_call_config(self, call, config, kept_in, kept_out):
        if call.layer in self._regrouped:
            return config  # its one axis that carries channels is written -1
        config = copy.deepcopy(config)
        shape = list(config[self.shape_key])
        before, after = call.input_shapes[0], call.output_shapes[0]
        if _reshape_kind(before, after, None) == "split":
            if shape[-2] != -1:
                shape[-2] = int(len(kept_in[0])) // int(after[-1])
        elif shape[-1] != -1:
            shape[-1] = int(len(kept_out[0]))
        config[self.shape_key] = shape
        return config


def _regrouped(call, elements: np.ndarray, builder: ChannelBuilder) -> np.ndarray | None:
    """A reshape that moves channels among axes, written with -1 on the output axis that carries them (ViTDet's
    attention: per-window heads to one axis of windows x heads, and scores back), and possibly a last axis it
    leaves as it was (a head's size): each output entry holds the element of the input entry it came from, and an
    axis along which the elements do not vary holds none. Every entry along that last axis goes with its index on
    the -1 axis (one class, a head), so pruning only ever changes what -1 stands for. None where sizes are open
    or channels land elsewhere: a surgery could not write that shape."""
    before, after = call.input_shapes[0], call.output_shapes[0]
    target = list(call.layer.target_shape if hasattr(call.layer, "target_shape") else call.layer.newshape[1:])
    if None in before[1:] or None in after[1:] or len(target) != len(after) - 1 or target.count(-1) != 1:
        return None
    free, last = target.index(-1), len(target) - 1
    moved = np.broadcast_to(elements, before[1:]).reshape(after[1:])
    varying = {axis for axis in range(moved.ndim) if not (moved == moved.take([0], axis=axis)).all()}
    if free not in varying or not varying <= {free, last} or (last in varying and (last == free or after[-1] != before[-1])):
        return None
    kept = moved[tuple(slice(None) if axis in varying else slice(0, 1) for axis in range(moved.ndim))]
    if last in varying:
        _outer_axis_classes(builder, kept, [free, last])
    return np.ascontiguousarray(kept)


def _reshape_kind(before: tuple, after: tuple, elements: np.ndarray | None) -> str:
    channels_last = elements is None or is_last_axis(elements)
    if channels_last and before[-1] is not None and before[-1] == after[-1]:
        return "keep"
    if channels_last and len(after) >= 3 and None not in (before[-1], after[-2], after[-1]) and after[-2] * after[-1] == before[-1]:
        return "split"
    heads_last = elements is None or (elements.ndim >= 2 and all(size == 1 for size in elements.shape[:-2]))
    if heads_last and len(before) >= 3 and None not in (after[-1], before[-2], before[-1]) and before[-2] * before[-1] == after[-1]:
        return "merge"
    return "other"


class ExpandDimsHandler(ChannelHandler):
    """`keras.ops.expand_dims`: new axes of size 1 carry no channels (an attention mask gains the heads axis it
    broadcasts over); the batch axis must stay first."""

    def couple_layout(self, call, inputs, builder):
        rank = len(call.output_shapes[0])
        axes = call.layer.axis if isinstance(call.layer.axis, (list, tuple)) else [call.layer.axis]
        axes = sorted(int(axis) % rank for axis in axes)
        if 0 in axes:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (ExpandDims) adds an axis before the batch axis; segprune cannot follow channels through it.")
        return [np.expand_dims(inputs[0], [axis - 1 for axis in axes])]


class SplitHandler(ChannelHandler):
    """`keras.ops.split` into equal sections (a SwiGLU MLP's gate and value halves, a fused query-key-value
    projection): along an axis that carries channels, section i's channel j is pruned with every other section's
    channel j, so the sections stay equal and the same split cuts the smaller tensor; along other axes every
    section keeps the input's channels. Split points given as indices along a channel axis are refused."""

    def couple_layout(self, call, inputs, builder):
        elements, rank = inputs[0], len(call.input_shapes[0])
        axis = int(call.layer.axis) % rank
        sections = call.layer.indices_or_sections
        if axis == 0:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Split) splits the batch axis; segprune cannot follow channels through it.")
        if elements.shape[axis - 1] == 1:
            return [elements for _ in call.output_shapes]
        if not isinstance(sections, int):
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Split) cuts channels at indices {sections}; segprune prunes only splits into equal sections.")
        parts = np.split(elements, sections, axis=axis - 1)
        for part in parts[1:]:
            builder.union([int(e) for e in part.ravel()], [int(e) for e in parts[0].ravel()])
        return parts


class PadHandler(ChannelHandler):
    """`keras.ops.pad` on axes that carry no channels (Swin pads its token grid to whole windows): the channels
    pass; padding an axis that carries channels adds channels no producer makes, and is refused."""

    def couple_layout(self, call, inputs, builder):
        elements, rank = inputs[0], len(call.input_shapes[0])
        widths = list(call.layer.pad_width)
        widths = widths * rank if len(widths) == 1 else widths
        padded = [axis for axis in range(1, rank) if tuple(widths[axis]) != (0, 0) and elements.shape[axis - 1] > 1]
        if padded:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Pad) pads axis {padded[0]}, which carries channels; segprune cannot prune through it.")
        return [elements]


class TransposeHandler(ChannelHandler):
    """`keras.ops.transpose`: the element array follows the axes (the batch axis must stay first)."""

    def couple_layout(self, call, inputs, builder):
        rank = len(call.input_shapes[0])
        axes = call.layer.axes
        permutation = list(range(rank))[::-1] if axes is None else [int(axis) % rank for axis in axes]
        if permutation[0] != 0:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Transpose) moves the batch axis ({permutation}); segprune cannot follow channels through it.")
        return [np.transpose(inputs[0], [axis - 1 for axis in permutation[1:]])]


class MatmulHandler(ChannelHandler):
    """`a @ b` on tensors of rank 3 or more (attention scores, attention-weighted values).

    Each output entry is made from a row of `a` and a column of `b`; every element among them, and so the
    output entry, is pruned together. In attention, heads sit on a batch axis of both operands: query and
    key heads (contracted), scores and value heads then become one class per head, whole heads go at once.
    """

    def couple_layout(self, call, inputs, builder):
        first, second = inputs
        if first.ndim < 2 or second.ndim < 2:
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Matmul) multiplies tensors of rank below 3 {call.input_shapes}; segprune follows channels only through batched matmuls.")
        batch = np.broadcast_shapes(first.shape[:-2], second.shape[:-2])
        first = np.broadcast_to(first, (*batch, *first.shape[-2:]))
        second = np.broadcast_to(second, (*batch, *second.shape[-2:]))
        outputs = np.empty((*batch, first.shape[-2], second.shape[-1]), dtype=np.int64)
        for index in np.ndindex(*outputs.shape):
            *batch_index, row, column = index
            contributors = [int(e) for e in (*first[(*batch_index, row)].ravel(), *second[(*batch_index, slice(None), column)].ravel())]
            builder.union(contributors[1:], contributors[:1] * (len(contributors) - 1))
            outputs[index] = contributors[0]
        return [outputs]

    def macs(self, call):
        """One multiply-accumulate per output entry and contracted position, batch aside: q @ k^T over (heads,
        tokens, head size) costs heads * tokens * tokens * head size. Read from the operands' shapes, so heads
        pruned from either count."""
        if len(call.input_shapes) != 2 or not call.output_shapes:
            return 0
        first, second = call.input_shapes
        if min(len(first), len(second)) < 3:  # not batched matrices: every output entry times the contracted length
            return _product([*call.output_shapes[0][1:], first[-1]])
        batch = _joint_sizes(first[1:-2], second[1:-2])
        return _product([*batch, first[-2], _joint_size(first[-1], second[-2]), second[-1]])


class ReductionHandler(ChannelHandler):
    """`keras.ops.mean` / `max` / `min` / `sum`: over other axes (global pooling in squeeze-excitation) the
    channels pass; over the channel axis they are mixed and never pruned through."""

    def couple(self, call, inputs, builder):
        rank = len(call.input_shapes[0])
        axes = call.layer.axis
        axes = range(rank) if axes is None else (axes if isinstance(axes, (list, tuple)) else [axes])
        if rank - 1 in [int(axis) % rank for axis in axes]:
            outputs = builder.fresh(call.layer, call.output_shapes[0][-1] if call.output_shapes[0] else 0)
            builder.fix([*inputs[0], *outputs])
            return [outputs]
        return [list(inputs[0])]


def _joint_size(first: int | None, second: int | None) -> int | None:
    """The size of an axis two operands share: the one that does not broadcast (1), else the smaller, which is the
    one a pruned shape has narrowed."""
    if first is None or second is None:
        return first if second is None else second
    if 1 in (first, second):
        return max(first, second)
    return min(first, second)


def _joint_sizes(first: tuple, second: tuple) -> list[int | None]:
    """Batch axes of two operands, right-aligned as broadcasting aligns them."""
    length = max(len(first), len(second))
    first, second = (1,) * (length - len(first)) + tuple(first), (1,) * (length - len(second)) + tuple(second)
    return [_joint_size(a, b) for a, b in zip(first, second)]


def _product(sizes) -> int:
    """The product of known sizes (an axis Keras leaves open counts once)."""
    return math.prod(int(size) for size in sizes if size is not None)


def _einsum_letters(equation: str) -> tuple[list[str], str]:
    inputs, output = equation.replace(" ", "").split("->")
    return inputs.split(","), output


def _outer_axis_classes(builder: ChannelBuilder, elements: np.ndarray, axes: list[int]) -> None:
    """Makes the elements over several channel axes vary along the first of them only (one class per head)."""
    moved = np.moveaxis(elements, axes, list(range(len(axes)))).reshape(elements.shape[axes[0]], -1) if axes else None
    for row in [] if moved is None else moved:
        builder.union([int(e) for e in row[1:]], [int(row[0])] * (len(row) - 1))


class EinsumDenseHandler(ChannelHandler):
    """EinsumDense (MultiHeadAttention's projections): "abc,cde->abde" splits C input channels into (heads, head
    size), "abcd,cde->abe" merges them back. The equation's letters name the axes: kernel-only output letters
    are the produced channels, input letters summed away are the consumed ones. When channels span several
    letters, a class spans all but the first (heads go whole); the weights list that first letter's axis only.

    A kernel that shares a letter with both the input and the output holds one matrix per position along it
    (ViTDet's relative-position terms, "bnyxc,yck->bnyxk": per query row y, head size c to key rows k). Such a
    layer is positional: it writes no channels of its own, and it applies the same kernel to every channel of an
    axis it carries through (n, the heads), so those channels pass and each one's contracted entries (a head's
    size) go with it; its kernel is never sliced."""

    def couple_layout(self, call, inputs, builder):
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        elements, output_shape = inputs[0], call.output_shapes[0]
        if _positional(call.layer.equation):
            return [_carried_through(call, elements, builder)]
        for letter, size in zip(input_letters[1:], elements.shape):
            if letter in output_letters and size > 1:
                raise UnsupportedLayerError(f"Layer {call.layer.name!r} (EinsumDense {call.layer.equation}) carries channels through unchanged on axis {letter!r}; segprune cannot prune that.")
        new = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        sizes = [output_shape[index] for index in new]
        fresh = np.array(builder.fresh(call.layer, int(np.prod(sizes))), dtype=np.int64).reshape(sizes)
        _outer_axis_classes(builder, fresh, list(range(len(sizes))))
        if mixes_channels(getattr(call.layer, "activation", None)):
            builder.fix([int(e) for e in fresh.ravel()])
        return [fresh.reshape([output_shape[index] if index in new else 1 for index in range(1, len(output_letters))])]

    def channel_axes(self, call):
        if _positional(call.layer.equation):
            return []  # one kernel for every channel carried through
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        input_shape, output_shape = call.input_shapes[0], call.output_shapes[0]
        axes = []
        consumed = [index for index, letter in enumerate(input_letters) if index and letter in kernel_letters and letter not in output_letters]
        if consumed:
            inner = int(np.prod([input_shape[index] for index in consumed[1:]]))
            axis = kernel_letters.index(input_letters[consumed[0]])
            axes.append(ChannelAxis("kernel", "input", axis, np.arange(input_shape[consumed[0]]) * inner))
        produced = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        if produced:
            first = output_letters[produced[0]]
            inner = int(np.prod([output_shape[index] for index in produced[1:]]))
            positions = np.arange(output_shape[produced[0]]) * inner
            axes.append(ChannelAxis("kernel", "output", kernel_letters.index(first), positions))
            bias_axes = call.layer.bias_axes or ""
            if first in bias_axes and weight_shape(call.layer, "bias") is not None:
                axes.append(ChannelAxis("bias", "output", bias_axes.index(first), positions, "vector"))
        return axes

    def macs(self, call):
        """One multiply-accumulate per combination of the equation's letters, batch aside: "abc,cde->abde" costs
        tokens * C * heads * head size. Sizes come from the call's shapes (so pruned widths count), else the kernel."""
        if not call.input_shapes or not call.output_shapes:
            return 0
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        if "." in call.layer.equation:
            output_entries = math.prod(size for size in call.output_shapes[0][1:] if size is not None)
            return output_entries * math.prod(size for letter, size in zip(kernel_letters, call.layer.kernel.shape) if letter not in output_letters)
        sizes = dict(zip(kernel_letters, call.layer.kernel.shape))
        sizes.update((letter, size) for letter, size in zip(input_letters, call.input_shapes[0]) if size is not None)
        sizes.update((letter, size) for letter, size in zip(output_letters, call.output_shapes[0]) if size is not None)
        # the batch letter counts once; an output axis the layer's config leaves unknown (None) is the input's
        return math.prod(int(sizes.get(letter, 1)) for letter in {*input_letters[1:], *kernel_letters, *output_letters[1:]})

    def sparse_kernels(self, layer):
        return []  # attention projections stay dense: their kernels have no single reduction axis to run N:M along

    def edit_call_config(self, call, config, kept_in, kept_out):
        (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
        output_shape = call.output_shapes[0]
        if _positional(call.layer.equation):  # the carried axis keeps what its input keeps
            shape = list(config["output_shape"]) if isinstance(config["output_shape"], (list, tuple)) else [config["output_shape"]]
            for index, letter in enumerate(output_letters[1:]):
                if letter in input_letters and letter not in kernel_letters and shape[index] is not None:
                    shape[index] = None
            return {**config, "output_shape": shape}
        produced = [index for index, letter in enumerate(output_letters) if index and letter in kernel_letters and letter not in input_letters]
        if not produced:
            return config
        inner = int(np.prod([output_shape[index] for index in produced[1:]]))
        shape = list(config["output_shape"]) if isinstance(config["output_shape"], (list, tuple)) else [config["output_shape"]]
        shape[produced[0] - 1] = int(len(kept_out[0])) // inner
        return {**config, "output_shape": shape}


def _positional(equation: str) -> bool:
    """Whether an EinsumDense kernel holds one matrix per position (a letter in its input, kernel and output)."""
    if "." in equation:
        return False
    (input_letters, kernel_letters), output_letters = _einsum_letters(equation)
    return any(letter in kernel_letters and letter in output_letters for letter in input_letters[1:])


def _carried_through(call, elements: np.ndarray, builder: ChannelBuilder) -> np.ndarray:
    """A positional EinsumDense's output elements: the input's along the one axis carried through without the
    kernel (the heads), each index's contracted entries one class with it; every other output axis holds none."""
    (input_letters, kernel_letters), output_letters = _einsum_letters(call.layer.equation)
    letters = input_letters[1:]
    channel_letters = [letter for letter, size in zip(letters, elements.shape) if size > 1]
    carried = [letter for letter in channel_letters if letter in output_letters and letter not in kernel_letters]
    contracted = [letter for letter in channel_letters if letter not in output_letters]
    if len(carried) != 1 or len(carried) + len(contracted) != len(channel_letters):
        raise UnsupportedLayerError(
            f"Layer {call.layer.name!r} (EinsumDense {call.layer.equation}) applies a kernel per position to channels on "
            f"axes {channel_letters}; segprune follows such a layer only where it carries one axis of channels through."
        )
    axis = letters.index(carried[0])
    per_index = np.moveaxis(elements, axis, 0).reshape(elements.shape[axis], -1)
    for row in per_index:
        builder.union([int(e) for e in row[1:]], [int(row[0])] * (len(row) - 1))
    shape = [elements.shape[axis] if letter == carried[0] else 1 for letter in output_letters[1:]]
    return per_index[:, 0].reshape(shape)


class DotProductAttentionHandler(ChannelHandler):
    """`keras.ops.dot_product_attention` on (batch, tokens, heads, head size): a head of the query, key and value
    and of the output is one class, so heads go whole."""

    def couple_layout(self, call, inputs, builder):
        query, key, value = inputs[:3]
        # a bias or mask (batch, heads, queries, keys) that broadcasts over the heads carries none of their channels
        per_head = [array for array in inputs[3:] if array.ndim >= 3 and array.shape[-3] > 1]
        if per_head or min(query.ndim, key.ndim, value.ndim) != 3:
            raise UnsupportedLayerError(
                f"Layer {call.layer.name!r} (DotProductAttention) not on (batch, tokens, heads, head size), or with a bias or "
                "mask that differs per head; segprune cannot prune it."
            )
        heads = max(query.shape[-2], key.shape[-2], value.shape[-2])
        for head in range(heads):
            members = [int(e) for array in (query, key, value) for e in array[:, min(head, array.shape[-2] - 1), :].ravel()]
            builder.union(members[1:], members[:1] * (len(members) - 1))
        return [value]

    def macs(self, call):
        """Scores (queries x keys x head size per head) and the weighted sum of values (queries x keys x value
        size per head); the softmax between them is no multiply-accumulate. Heads are read from the operands, so
        pruned heads count as gone."""
        if len(call.input_shapes) < 3 or min(len(shape) for shape in call.input_shapes[:3]) != 4:
            return 0
        query, key, value = call.input_shapes[:3]
        heads = _joint_size(_joint_size(query[2], key[2]), value[2])
        return _product([heads, query[1], key[1], _joint_size(query[3], key[3])]) + _product([heads, query[1], value[1], value[3]])


class EinsumOperationHandler(ChannelHandler):
    """`keras.ops.einsum` between tensors (attention scores from queries and keys, scores times values): each
    output entry is made from every operand entry with the same letters, all pruned together, like `@`."""

    def couple_layout(self, call, inputs, builder):
        operand_letters, output_letters = _einsum_letters(call.layer.subscripts)
        if "." in call.layer.subscripts or any(len(letters) != array.ndim + 1 for letters, array in zip(operand_letters, inputs)):
            raise UnsupportedLayerError(f"Layer {call.layer.name!r} (Einsum {call.layer.subscripts}): segprune follows channels through einsums over whole tensors with a leading batch letter only.")
        sizes = {}
        for letters, array in zip(operand_letters, inputs):
            for letter, size in zip(letters[1:], array.shape):
                sizes[letter] = max(sizes.get(letter, 1), size)
        outputs = np.empty([sizes.get(letter, 1) for letter in output_letters[1:]], dtype=np.int64)
        for index in np.ndindex(*outputs.shape):
            position = dict(zip(output_letters[1:], index))
            members = []
            for letters, array in zip(operand_letters, inputs):
                selector = tuple(
                    (min(position[letter], size - 1) if letter in position else slice(None)) for letter, size in zip(letters[1:], array.shape)
                )
                members += [int(e) for e in np.asarray(array[selector]).ravel()]
            builder.union(members[1:], members[:1] * (len(members) - 1))
            outputs[index] = members[0]
        return [outputs]

    def macs(self, call):
        """One multiply-accumulate per combination of the equation's letters, the leading batch letter aside (as
        EinsumDense): "aecd,abcd->acbe" (MultiHeadAttention's scores) costs keys x heads x size x queries. A letter's
        size is the smallest its operands give it (broadcast 1s aside), so heads pruned from one operand count."""
        operand_letters, output_letters = _einsum_letters(call.layer.subscripts)
        if len(operand_letters) < 2 or len(operand_letters) != len(call.input_shapes) or not call.output_shapes:
            return 0  # one operand: a transpose or a sum, no product
        if "." in call.layer.subscripts:
            return 0  # an ellipsis is not priced (nor pruned through: the graph pins it)
        sizes: dict[str, int | None] = {}
        for letters, shape in zip([*operand_letters, output_letters], [*call.input_shapes, call.output_shapes[0]]):
            for letter, size in zip(letters, shape):
                sizes[letter] = _joint_size(sizes[letter], size) if letter in sizes else size
        batch = {letters[0] for letters in [*operand_letters, output_letters] if letters}  # every tensor's axis 0
        return _product(size for letter, size in sizes.items() if letter not in batch)


class SoftmaxOperationHandler(ChannelHandler):
    """`keras.ops.softmax`: normalising over channels mixes them (never pruned through); over tokens, as
    attention scores do, the channels (heads) pass."""

    def couple_layout(self, call, inputs, builder):
        elements, rank = inputs[0], len(call.input_shapes[0])
        axes = call.layer.axis if isinstance(call.layer.axis, (list, tuple)) else [call.layer.axis]
        if any(elements.shape[int(axis) % rank - 1] > 1 for axis in axes):
            builder.fix([int(e) for e in elements.ravel()])
        return [elements]
