"""The names the commands offer as choices, written out so that `segprune COMMAND --help` starts no framework.

The modules that define them import Keras; tests/test_cli_startup.py checks every name here against its source.
"""

from __future__ import annotations

ARCHITECTURES = ("fcn", "mobilenet-unet", "unet", "vit-segmenter")  # segprune.models.ARCHITECTURES
ONESHOT_METHODS = ("l1", "l2", "bn-scale", "taylor", "activation", "random", "mutual-info")  # segprune.api
REGULARISED_METHODS = ("l0-channel", "slimming")  # segprune.api
SEARCH_METHODS = ("greedy", "random-search")  # segprune.api
SPARSE_METHODS = ("magnitude", "l1", "l0")  # segprune.api.SPARSE_SETTINGS
LATENCY_RUNTIMES = ("onnxruntime", "openvino")  # segprune.runtime.latency.RUNTIMES
PRECISIONS = ("fp32", "bf16", "int8")  # segprune.runtime.latency
BENCHMARK_PRECISIONS = ("fp32", "bf16")  # segprune.runtime.benchmark.PRECISIONS["openvino"]
QUANTIZE_PRECISIONS = ("int8", "bf16")  # segprune.runtime.quantize.PRECISIONS
BENCHMARK_RUNTIMES = ("onnxruntime", "openvino", "litert", "keras")  # segprune.runtime.benchmark.RUNTIMES
BENCHMARK_MODES = ("latency", "throughput")  # segprune.runtime.benchmark.MODES
EXPORT_FORMATS = ("litert", "onnx", "openvino")  # segprune.runtime.export.FORMATS
QUANTIZE_RUNTIMES = ("onnxruntime", "openvino", "litert")  # segprune.runtime.quantize.RUNTIMES
OPTIMIZE_RUNTIMES = ("onnxruntime", "openvino", "litert")  # segprune.experiments.optimize.deploy.RUNTIMES
OPTIMIZE_METHODS = ("l1", "greedy", "random-search")  # segprune.experiments.optimize.plan.METHOD_REASONS
CLASSICAL_METHODS = ("canny", "sobel", "otsu", "watershed", "kmeans", "dbscan")  # segprune.classical.METHODS
CLASSICAL_MAPPINGS = ("bright", "dark", "oracle")  # segprune.classical.mapping.MAPPINGS
SWEEP_METHODS = (  # segprune.experiments.SWEEP_METHODS
    "oneshot-l1", "oneshot-l2", "oneshot-bn-scale", "oneshot-taylor", "oneshot-activation", "oneshot-random", "oneshot-mutual-info",
    "l0-channel", "slimming", "greedy", "random-search",
    "classical-canny", "classical-sobel", "classical-otsu", "classical-watershed", "classical-kmeans", "classical-dbscan",
)
SWEEP_DEFAULT_METHODS = ("oneshot-l1", "oneshot-random", "classical-otsu", "classical-kmeans")  # segprune.experiments.SweepConfig().methods

# The demo's defaults its help states: segprune.demo.DEMO_EPOCHS and DEMO_INSTANCES.finetune_epochs.
DEMO_EPOCHS = 40
DEMO_MASK_RCNN_EPOCHS = 40
