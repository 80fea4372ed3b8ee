"""A per-layer latency table for ONNX Runtime or OpenVINO, fp32, bf16 or int8, in the manner of NetAdapt (Yang et al., ECCV 2018).

Each convolution-like layer is timed alone, as a one-node ONNX graph at its input size, for the input and
output widths a configuration gives it; entries are timed the first time they are needed and memoised.
The layers the table does not time (pooling, resizing, concatenation, layout changes) are one constant,
calibrated so that the table reproduces the dense model's measured latency. The estimate therefore keeps
what makes pruned models slow in practice: a width of 8 costs about what 16 costs when the kernels work
in blocks of 16. A search always times its final model as well.

A table is for one runtime and one precision, those the model will ship on. An int8 entry times the layer
after ONNX Runtime's static QDQ quantization (per-channel weights) calibrated on random inputs: the
quantized graph's structure, not its calibration, decides its speed. OpenVINO runs that same QDQ graph
(it executes QDQ ONNX models in int8); the shipped OpenVINO model is quantized by NNCF (`quantize`). bf16 is
OpenVINO's: the fp32 layer compiled with INFERENCE_PRECISION_HINT bf16 (the CPU needs AVX512_BF16 or AMX). fp32
means fp32 on both runtimes: OpenVINO is compiled with the f32 hint, not its default (bf16 where the CPU has it).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segprune._io import write_text
from segprune.cost.resources import narrowed_shapes
from segprune.graph.groups import ChannelGraph
from segprune.graph.registry import pricing_handler
from segprune.runtime.benchmark import file_latency
from segprune.runtime.export import FORMATS, export_model, open_runner
from segprune.runtime.quantize import quantize_onnx, quantize_openvino
from segprune.sizes import as_image_size, format_size

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")


def latency_kind(layer: keras.layers.Layer) -> str | None:
    """The one-node graph a table times this layer as (its handler says: "conv", "depthwise", "separable",
    "transpose", "dense"); None for the layers in the untimed remainder."""
    return pricing_handler(layer).latency_kind(layer)


class LatencyTable:
    """Estimated latency (ms, batch 1) of a model's configurations on one runtime at one precision.

    Args:
        threads: Intra-op threads, as the deployment will use.
        runtime: "onnxruntime" or "openvino".
        precision: "fp32", "bf16" (OpenVINO) or "int8" (layers timed after static QDQ quantization).
        rounds: Timed runs per entry (the median is kept), after 2 warm-up runs.
        path: A JSON file the entries are kept in, so a resumed search reuses the same figures.
        image_size: The model's (height, width) the table is for (its remainder is calibrated at it); a saved
            table for another size is refused. None: not recorded (a table used at one size only).

    Example:
        >>> table = LatencyTable(threads=2, runtime="openvino", precision="int8")
        >>> table.calibrate(graph, dense_ms=24.0)
        >>> table.cost(graph, removed=[])
        24.0
    """

    def __init__(
        self,
        threads: int = 2,
        rounds: int = 15,
        path: str | Path | None = None,
        runtime: str = "onnxruntime",
        precision: str = "fp32",
        image_size: int | Sequence[int] | None = None,
    ) -> None:
        check_runtime(runtime, precision)
        self.runtime = runtime
        self.precision = precision
        self.image_size = None if image_size is None else format_size(image_size)
        self.threads = threads
        self.rounds = rounds
        self.path = Path(path) if path else None
        self.entries: dict[str, float] = {}
        self.executed: dict[str, str] = {}  # per entry, the precision the runtime reports it ran (an int8 table's fp32 layers)
        self.rest_ms: float | None = None
        self.timed_floor: float | None = None  # the narrowest configuration's timed share of the dense latency
        if self.path and self.path.exists():
            saved = json.loads(self.path.read_text())
            saved_for = (saved.get("runtime", "onnxruntime"), saved.get("precision", "fp32"))
            if saved_for != (runtime, precision):
                raise ValueError(
                    f"The latency table {str(self.path)!r} was timed on {saved_for[0]} at {saved_for[1]}, not {runtime} at "
                    f"{precision}; give this table another path (or remove the file) to time it anew."
                )
            if saved.get("image_size") not in (None, self.image_size):  # None: a table saved before sizes were recorded
                raise ValueError(
                    f"The latency table {str(self.path)!r} was timed at {saved.get('image_size') or 'an unrecorded size'}, not "
                    f"{self.image_size or 'an unrecorded size'}; give this table another path (or remove the file) to time it anew."
                )
            self.entries = saved["entries"]
            self.executed = saved.get("executed", {})
            self.rest_ms = saved["rest_ms"]
            self.timed_floor = saved.get("timed_floor")

    def cost(self, graph: ChannelGraph, removed: Iterable[int]) -> float:
        if self.rest_ms is None:
            raise RuntimeError("Calibrate the latency table on the dense model first (LatencyTable.calibrate).")
        return self.rest_ms + self.layers_ms(graph, removed)

    def layers_ms(self, graph: ChannelGraph, removed: Iterable[int]) -> float:
        removed_array = np.array(sorted(set(removed)), dtype=np.int64)
        total, new_entries = 0.0, False
        for call, inputs, outputs in zip(graph.trace.calls, graph.call_inputs, graph.call_outputs):
            if latency_kind(call.layer) is None:
                continue
            input_shape, output_shape = narrowed_shapes(call, inputs, outputs, removed_array)
            key = json.dumps([type(call.layer).__name__, _layer_signature(call.layer), input_shape, output_shape])
            if key not in self.entries:
                self.entries[key], self.executed[key] = _time_layer(
                    call.layer, input_shape, output_shape, self.threads, self.rounds, runtime=self.runtime, precision=self.precision
                )
                new_entries = True
            total += self.entries[key]
        if new_entries:
            self.save()
        return total

    def calibrate(self, graph: ChannelGraph, dense_ms: float) -> None:
        """Sets the untimed remainder so that the dense configuration costs `dense_ms`."""
        if self.rest_ms is not None:
            return
        self.rest_ms = max(0.0, dense_ms - self.layers_ms(graph, []))
        self.save()

    def save(self) -> None:
        if self.path:
            saved = {
                "runtime": self.runtime, "precision": self.precision, "image_size": self.image_size, "rest_ms": self.rest_ms,
                "timed_floor": self.timed_floor,
            }
            write_text(self.path, json.dumps({**saved, "entries": self.entries, "executed": self.executed}))


def check_runtime(runtime: str, precision: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"Latency can be tabled for {list(RUNTIMES)}; got runtime {runtime!r}.")
    if precision not in PRECISIONS:
        raise ValueError(f"Latency can be tabled at {list(PRECISIONS)}; got precision {precision!r}.")
    if precision == "bf16" and runtime != "openvino":
        raise ValueError(f"bf16 latency is tabled on openvino (ONNX Runtime runs fp32 or int8 on CPUs); got runtime {runtime!r}.")


def _layer_signature(layer) -> list:
    config = layer.get_config()
    return [config.get(name) for name in ("kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier", "use_bias")]


def time_models(
    models: Sequence[keras.Model], image_size: int | Sequence[int], threads: int, runtime: str = "onnxruntime", precision: str = "fp32"
) -> list[float]:
    """Median latency (ms) of each model on `runtime` at `precision`, interleaved in one run.

    Each model is exported at the fixed shape 1 x height x width (`image_size`: (height, width), or N for NxN), as
    it would ship. An int8 model is
    quantized here on random calibration inputs (its speed does not depend on the calibration; its masks do,
    which is why the shipped model goes through `quantize` on real tiles).
    """
    check_runtime(runtime, precision)
    height, width = as_image_size(image_size)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, model in enumerate(models):
            shape = (1, height, width, int(model.inputs[0].shape[-1]))
            fp32 = Path(folder) / f"model{index}.onnx"
            export_model(model, fp32, "onnx", input_shape=shape)
            if precision == "fp32" and runtime == "onnxruntime":
                paths.append(fp32)
            elif precision in ("fp32", "bf16"):
                paths.append(Path(folder) / f"model{index}{FORMATS['openvino']}")
                export_model(model, paths[-1], "openvino", input_shape=shape)
            else:
                paths.append(Path(folder) / f"model{index}-int8{'.onnx' if runtime == 'onnxruntime' else '.xml'}")
                calibration = [np.random.default_rng(seed).random(shape).astype(np.float32) for seed in range(4)]
                (quantize_onnx if runtime == "onnxruntime" else quantize_openvino)(fp32, paths[-1], calibration)
        return [latency.median_ms for latency in file_latency(paths, runtime, (height, width), threads=threads, precision=_float_precision(precision))]


def _time_layer(
    layer, input_shape: tuple, output_shape: tuple, threads: int, rounds: int, runtime: str = "onnxruntime", precision: str = "fp32"
) -> tuple[float, str]:
    """Median ms of the layer alone, and the precision the runtime reports it ran in."""
    nodes, initializers = _onnx_nodes(layer, input_shape, output_shape)
    feed_shape = _nchw(input_shape)
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, feed_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "layer.onnx"
        onnx.save(model, str(path))
        feed = np.random.default_rng(0).standard_normal(feed_shape).astype(np.float32)
        if precision == "int8":
            # one layer alone always reads the model's input: quantize it all the same (shipped models keep
            # only their first convolutions fp32, a negligible share of the time)
            quantize_onnx(path, Path(folder) / "layer-int8.onnx", [feed], float_input_convs=False)
            path = Path(folder) / "layer-int8.onnx"
        runner = open_runner(path, threads, runtime, _float_precision(precision))
        for _ in range(2):
            runner(feed)
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            runner(feed)
            timings.append(time.perf_counter() - started)
        executed = runner.executed_precision  # read while the file is there
    return float(np.median(timings) * 1000.0), executed


def _float_precision(precision: str) -> str | None:
    """The float precision a runner is opened at: bf16 for bf16, else the runtime's fp32 (int8 layers around it)."""
    return "bf16" if precision == "bf16" else None


def _nchw(shape: tuple) -> list[int]:
    if len(shape) == 4:
        return [1, int(shape[3]), int(shape[1]), int(shape[2])]
    return [1, *[int(v) for v in shape[1:]]]


def _onnx_nodes(layer, input_shape: tuple, output_shape: tuple):
    rng = np.random.default_rng(0)
    config = layer.get_config()
    kind = latency_kind(layer)
    if kind == "dense":
        weight = rng.standard_normal((int(input_shape[-1]), int(output_shape[-1]))).astype(np.float32)
        if len(input_shape) == 4:  # a Dense on feature maps runs on NHWC data
            nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("MatMul", ["t", "w"], ["y"])]
        else:
            nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        return nodes, {"w": weight}
    if kind not in ("conv", "depthwise", "separable", "transpose"):
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has latency kind {kind!r}; a table times conv, depthwise, separable, transpose or dense layers.")
    in_channels, out_channels = int(input_shape[-1]), int(output_shape[-1])
    kernel = list(config["kernel_size"])
    attributes = dict(
        strides=list(config["strides"]),
        dilations=list(config.get("dilation_rate", (1, 1))),
        auto_pad="SAME_UPPER" if config["padding"] == "same" else "VALID",
    )
    if kind == "transpose":
        del attributes["dilations"]
        weight = rng.standard_normal((in_channels, out_channels, *kernel)).astype(np.float32)
        return [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attributes)], {"w": weight, "b": np.zeros(out_channels, np.float32)}
    if kind == "depthwise":
        weight = rng.standard_normal((out_channels, 1, *kernel)).astype(np.float32)
        return [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=in_channels, **attributes)], {"w": weight, "b": np.zeros(out_channels, np.float32)}
    if kind == "separable":
        middle = in_channels * int(config["depth_multiplier"])
        depthwise = rng.standard_normal((middle, 1, *kernel)).astype(np.float32)
        pointwise = rng.standard_normal((out_channels, middle, 1, 1)).astype(np.float32)
        nodes = [
            helper.make_node("Conv", ["x", "d"], ["m"], group=in_channels, **attributes),
            helper.make_node("Conv", ["m", "p", "b"], ["y"]),
        ]
        return nodes, {"d": depthwise, "p": pointwise, "b": np.zeros(out_channels, np.float32)}
    weight = rng.standard_normal((out_channels, in_channels, *kernel)).astype(np.float32)
    return [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attributes)], {"w": weight, "b": np.zeros(out_channels, np.float32)}
