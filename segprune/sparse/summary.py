"""What sparse pruning achieved, measured on the plain (stripped) model: zeros per layer, file size, MACs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from segprune.cost import flops
from segprune.models.loading import copy_model
from segprune.runtime.benchmark import zipped_size
from segprune.sparse.masks import prunable_kernels
from segprune.sparse.model import find_weight


@dataclass(frozen=True)
class LayerSparsity:
    layer: str
    weight: str
    size: int
    zeros: int
    macs: int
    macs_if_zeros_skipped: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclass(frozen=True)
class SparsitySummary:
    """Measured sparsity of a model's prunable kernels.

    Attributes:
        layers: One row per kernel.
        file_bytes: Size of the saved `.keras` file.
        zipped_bytes: Its size after DEFLATE (zeros compress; this is the on-disk saving).
        total_macs: MACs of the whole model at the measured input shape.
        macs_if_zeros_skipped: What a kernel that skips zero weights would execute.
    """

    layers: tuple[LayerSparsity, ...]
    file_bytes: int
    zipped_bytes: int
    total_macs: int
    macs_if_zeros_skipped: int

    @property
    def sparsity(self) -> float:
        """Zeros over all prunable kernel weights."""
        size = sum(layer.size for layer in self.layers)
        return sum(layer.zeros for layer in self.layers) / size if size else 0.0

    def to_dict(self) -> dict:
        return {
            "sparsity": self.sparsity,
            "file_bytes": self.file_bytes,
            "zipped_bytes": self.zipped_bytes,
            "total_macs": self.total_macs,
            "macs_if_zeros_skipped": self.macs_if_zeros_skipped,
            "layers": [asdict(layer) | {"sparsity": layer.sparsity} for layer in self.layers],
        }

    def format(self) -> str:
        lines = [f"{'layer':32s} {'weight':18s} {'size':>9s} {'sparsity':>9s}"]
        lines += [f"{row.layer:32s} {row.weight:18s} {row.size:9d} {row.sparsity:9.3f}" for row in self.layers]
        lines.append(
            f"total sparsity {self.sparsity:.4f}; zipped {self.zipped_bytes / 1e6:.2f} MB "
            f"(file {self.file_bytes / 1e6:.2f} MB); MACs {self.total_macs / 1e9:.3f} G, "
            f"{self.macs_if_zeros_skipped / 1e9:.3f} G if zeros were skipped"
        )
        return "\n".join(lines)


def sparsity_summary(model: keras.Model, input_shape: tuple[int, int] = (256, 256), ignore: Sequence[str] = ()) -> SparsitySummary:
    """Counts exact zeros in every prunable kernel of a plain model and measures its zipped size.

    Example:
        >>> summary = sparsity_summary(strip(sparse_model))
        >>> round(summary.sparsity, 2)
        0.9
    """
    macs_by_layer: dict[str, int] = {}
    cost = flops(model, input_shape)
    for layer in cost.layers:
        macs_by_layer[layer.name] = macs_by_layer.get(layer.name, 0) + layer.macs
    rows = []
    sites = prunable_kernels(model, ignore)
    sizes_by_layer: dict[str, list[tuple[int, int]]] = {}
    values = {}
    for site in sites:
        value = keras.ops.convert_to_numpy(find_weight(model, site.layer, site.weight))
        values[site] = value
        sizes_by_layer.setdefault(site.layer, []).append((value.size, int(np.count_nonzero(value == 0))))
    for site in sites:
        value = values[site]
        layer_size = sum(size for size, _ in sizes_by_layer[site.layer])
        layer_nonzero = layer_size - sum(zeros for _, zeros in sizes_by_layer[site.layer])
        share = value.size / layer_size  # split a separable layer's MACs between its two kernels by size
        macs = int(macs_by_layer.get(site.layer, 0) * share)
        rows.append(
            LayerSparsity(site.layer, site.weight, int(value.size), int(np.count_nonzero(value == 0)), macs, int(macs * layer_nonzero / layer_size))
        )
    skipped = cost.macs - sum(row.macs for row in rows) + sum(row.macs_if_zeros_skipped for row in rows)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        (copy_model(model) if model.compiled else model).save(path)  # an optimizer's state is not the model
        file_bytes, zipped = path.stat().st_size, zipped_size(path)
    return SparsitySummary(tuple(rows), file_bytes, zipped, cost.macs, skipped)
