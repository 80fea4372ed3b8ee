"""Sparse (unstructured) pruning: magnitude masks on a schedule, L1 and L0 (hard-concrete) regularisation.

Every method fine-tunes a copy of the model and returns a plain model with exact zeros in its kernels.
The channel-level variants (L0 channel gates, network slimming) live in `segprune.structured.regularised`.
"""

from segprune.sparse.magnitude import magnitude_prune
from segprune.sparse.masks import Pattern, prunable_kernels
from segprune.sparse.model import SparseModel, strip
from segprune.sparse.regularised import l0_sparsify, l1_sparsify
from segprune.sparse.schedules import ConstantSparsity, PolynomialDecay
from segprune.sparse.summary import SparsitySummary, sparsity_summary

__all__ = [
    "ConstantSparsity",
    "Pattern",
    "PolynomialDecay",
    "SparseModel",
    "SparsitySummary",
    "l0_sparsify",
    "l1_sparsify",
    "magnitude_prune",
    "prunable_kernels",
    "sparsity_summary",
    "strip",
]
