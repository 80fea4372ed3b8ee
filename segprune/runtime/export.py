"""Export to ONNX, OpenVINO IR or LiteRT, verified against the Keras model before the file is put in place.

Shapes: by default batch, height and width stay dynamic. With `input_shape` (e.g. `(1, 256, 256)`) the graph
is traced at that fixed shape and its constants folded: tf2onnx runs TensorFlow's grappler (constant folding
among its passes) on the frozen graph and then its own ONNX optimisers, so every Shape/Gather/Slice/Pad chain
that only computes sizes becomes a constant (the default U-Net: 160 ONNX nodes dynamic, 41 fixed). The
OpenVINO IR is converted from that ONNX graph by `openvino.convert_model` and kept in fp32.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from segprune.inference import fit_to_shape
from segprune.models.outputs import check_image_input
from segprune.runtime import _foreign

DEFAULT_TOLERANCE = 1e-4
FORMATS = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}

InputShape = tuple  # (batch, height, width, channels); None where dynamic
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16"}  # segprune's precision names -> OpenVINO's INFERENCE_PRECISION_HINT
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}
_COMPUTE_LAYERS = frozenset({"Convolution", "Deconvolution", "FullyConnected", "MatMul"})  # OpenVINO CPU plugin layer types
_ONNX_COMPUTE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_ONNX_INTEGER = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})


# tf2onnx runs its graph optimisers with their exceptions caught and skipped. Rarely (about once in several
# test-suite runs, depending on what ran before in the process) its reshape optimiser fails on the first
# pass only, and the file's output keeps a leading dimension of 1: (1, 1, H, W, C) for (1, H, W, C). The
# verification sees outputs of another shape; writing the file again gives the right graph.
WRITE_ATTEMPTS = 2


class ExportMismatchError(RuntimeError):
    """The exported model's outputs differ from the Keras model's beyond tolerance."""


def export_model(
    model: keras.Model,
    path: str | Path,
    format: str = "onnx",
    tolerance: float = DEFAULT_TOLERANCE,
    samples: Sequence[np.ndarray] = (),
    check_size: int = 64,
    input_shape: Sequence[int] | str | None = None,
) -> float:
    """Writes `model` as ONNX, OpenVINO IR (`.xml` + `.bin`) or LiteRT and checks it against Keras.

    The graph is traced with `training=False` explicitly (Keras's own export leaves the flag unset, and
    BatchNormalization after a Resizing then exports in training mode). The exported model runs on a random
    input and on every array in `samples` (real images, (H, W, C) in [0, 1]); the file is only put at `path`
    when the largest absolute difference from Keras is within `tolerance`.

    Args:
        input_shape: None for dynamic batch, height and width; else a fixed shape, `(height, width)`,
            `(batch, height, width)`, `(batch, height, width, channels)` or a string such as `"1x256x256"`.
            Samples are then fitted to it (`fit_to_shape`), and the random check input has that shape.
        check_size: Height and width of the random check input of a dynamic export.

    Returns:
        The largest absolute difference measured.

    Example:
        >>> export_model(model, "runs/unet.xml", format="openvino", input_shape="1x256x256")
        3.6e-06
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {list(FORMATS)}.")
    path = Path(path)
    if format == "openvino" and path.suffix != ".xml":
        raise ValueError(f"An OpenVINO IR is an .xml file (its weights go to a .bin beside it); got {str(path)!r}.")
    shape = resolve_input_shape(model, input_shape)
    inputs = verification_inputs(shape, samples, check_size)
    expected = [output_list(model.predict(x, verbose=0)) for x in inputs]  # export needs a called model
    with staged_file(path) as temporary:
        for attempt in range(WRITE_ATTEMPTS):
            write_model(model, temporary, format, shape)
            try:
                difference = largest_difference(open_runner(temporary, threads=2), inputs, expected)
                break
            except ExportMismatchError:  # outputs of another shape: see WRITE_ATTEMPTS
                if attempt + 1 == WRITE_ATTEMPTS:
                    raise
        if not difference <= tolerance:
            raise ExportMismatchError(
                f"The {format} export of {model.name!r} differs from Keras by {difference:.3g} "
                f"(tolerance {tolerance:g}); the file was not written."
            )
    return difference


def export_onnx(model: keras.Model, path: str | Path, tolerance: float = DEFAULT_TOLERANCE, input_shape: Sequence[int] | str | None = None) -> float:
    """`export_model` with `format="onnx"`."""
    return export_model(model, path, "onnx", tolerance, input_shape=input_shape)


def write_model(model: keras.Model, path: Path, format: str, shape: InputShape) -> None:
    """Writes `model` in `format` at `shape`, unverified (`export_model` verifies)."""
    if format == "onnx":
        _foreign.write_onnx(model, path, shape)
    elif format == "openvino":
        with tempfile.TemporaryDirectory(prefix="segprune-ov-") as folder:
            onnx_path = Path(folder) / "model.onnx"
            _foreign.write_onnx(model, onnx_path, shape)
            onnx_to_openvino(onnx_path, path)
    else:
        _foreign.write_litert(model, path, shape)


def onnx_to_openvino(onnx_path: str | Path, xml_path: str | Path, precision: str | None = None) -> None:
    """Converts an ONNX file to an OpenVINO IR, weights kept in their precision (no fp16 compression).

    `precision` ("fp32" or "bf16") is written into the IR as its `INFERENCE_PRECISION_HINT` runtime option, which
    OpenVINO applies when it compiles the file (the weights stay fp32); None writes no hint.
    """
    import openvino

    model = openvino.convert_model(str(onnx_path))
    if precision is not None:
        set_openvino_precision(model, precision)
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)


def set_openvino_precision(model, precision: str) -> None:
    """Records `precision` ("fp32" or "bf16") in an OpenVINO model as the inference precision it is compiled for."""
    if precision not in OPENVINO_HINTS:
        raise ValueError(f"OpenVINO float precisions are {list(OPENVINO_HINTS)}; got {precision!r}.")
    model.set_rt_info(OPENVINO_HINTS[precision], ["runtime_options", "INFERENCE_PRECISION_HINT"])


def parse_input_shape(text: str) -> tuple[int, ...]:
    """`"1x256x256"` -> (1, 256, 256); `"256x256"` -> (256, 256).

    Example:
        >>> parse_input_shape("1x256x256x1")
        (1, 256, 256, 1)
    """
    parts = text.lower().replace(",", "x").split("x")
    if not 2 <= len(parts) <= 4 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"Input shape {text!r} is not HxW, BxHxW or BxHxWxC with positive integers, e.g. 1x256x256.")
    return tuple(int(part) for part in parts)


def resolve_input_shape(model: keras.Model, input_shape: Sequence[int] | str | None) -> InputShape:
    """The 4-D export shape: (None, None, None, C) when `input_shape` is None, else fixed (B, H, W, C)."""
    check_image_input(model)
    model_shape = tuple(model.inputs[0].shape)
    channels = int(model_shape[-1])
    if input_shape is None:
        return (None, *model_shape[1:3], channels)
    shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else tuple(int(v) for v in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 3:
        shape = (*shape, channels)
    if len(shape) != 4 or shape[-1] != channels or min(shape) < 1:
        raise ValueError(f"Input shape {tuple(input_shape)} does not fit {model.name!r}: expected (batch, height, width, {channels}).")
    for fixed, wanted in zip(model_shape[1:3], shape[1:3]):
        if fixed is not None and fixed != wanted:
            raise ValueError(f"{model.name!r} takes inputs of {model_shape[1:3]} (height, width); got {shape[1:3]} in input shape {shape}.")
    _check_runs_at(model, shape)
    return shape


def _check_runs_at(model: keras.Model, shape: InputShape) -> None:
    """Refuses a fixed size the network cannot take (a U-Net's skip connections need a height and width its poolings
    divide: 100x140 meets 24x34 against 25x35 at the third level), in one line, with a size that fits."""
    try:
        model(np.zeros(shape, np.float32), training=False)  # a symbolic call lets mismatched skip sizes through
    except Exception:  # Keras raises whatever the failing layer raises (ValueError, a backend's own error)
        height, width = (-(-side // 32) * 32 for side in shape[1:3])
        raise ValueError(
            f"{model.name!r} cannot run at input {'x'.join(map(str, shape))} (its layers' shapes do not meet there): a fixed size must be one its "
            f"downsampling divides (each pooling or strided layer halves it). Use e.g. {shape[0]}x{height}x{width}x{shape[3]} (a multiple of 32); "
            "images of other sizes are cut into tiles of that shape."
        ) from None


def is_static(shape: InputShape) -> bool:
    return all(dimension is not None for dimension in shape)


def verification_inputs(shape: InputShape, samples: Sequence[np.ndarray], check_size: int) -> list[np.ndarray]:
    """A random batch of the export's shape (`check_size` where dynamic), then each sample as a batch."""
    batch, height, width, channels = shape
    random_shape = (batch or 1, height or check_size, width or check_size, channels)
    inputs = [np.random.default_rng(0).random(random_shape).astype(np.float32)]
    for sample in samples:
        sample = np.asarray(sample, dtype=np.float32)
        if height is not None and width is not None:
            sample = fit_to_shape(sample, height, width)
        inputs.append(np.repeat(sample[None], batch or 1, axis=0))
    return inputs


def output_list(outputs) -> list[np.ndarray]:
    """A model's outputs as a list of arrays in the model's order, whether it has one output or several."""
    if isinstance(outputs, dict):
        return [np.asarray(value) for value in outputs.values()]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(value) for value in outputs]
    return [np.asarray(outputs)]


def largest_difference(runner, inputs: Sequence[np.ndarray], expected: Sequence[Sequence[np.ndarray]]) -> float:
    """The largest absolute difference over every output of every input (`expected[i]`: Keras's outputs of `inputs[i]`)."""
    worst = 0.0
    for x, wanted in zip(inputs, expected):
        got = runner.outputs(x)
        if [g.shape for g in got] != [w.shape for w in wanted]:
            raise ExportMismatchError(
                f"The export gives outputs of shapes {[g.shape for g in got]} where Keras gives {[w.shape for w in wanted]}; "
                "the file was not written."
            )
        worst = max(worst, *(float(np.max(np.abs(g - w))) for g, w in zip(got, wanted)))
    return worst


def companion_files(path: Path) -> list[Path]:
    """The files a model file is made of: an OpenVINO `.xml` comes with its `.bin`."""
    return [path.with_suffix(".bin"), path] if path.suffix == ".xml" else [path]


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """Yields a path in a temporary folder beside `path`; on success its file(s) are renamed onto `path`.

    A model may be two files (OpenVINO's `.xml` and `.bin`); the `.xml` is moved last, so a reader never
    finds an `.xml` whose weights are missing. On an exception nothing at `path` changes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        temporary = folder / path.name
        yield temporary
        for source, target in zip(companion_files(temporary), companion_files(path)):
            os.replace(source, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def onnx_session(path: str | Path, threads: int = 2):
    """An ONNX Runtime CPU session with `threads` intra-op threads and no inter-op parallelism."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle worker threads spin by default; with several sessions alive (interleaved timing) the spinning
    # threads of one steal the cores of another, and every latency comes out inflated.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Runs an ONNX file on ONNX Runtime: `runner(batch) -> output` (the first), `runner.outputs(batch)` -> all, in order.

    `executed_precision` ("fp32", or "int8 (fp32 fallback)" for a QDQ graph) is read when the file is opened, so it
    stays readable after a temporary file is gone.
    """

    def __init__(self, path: str | Path, threads: int) -> None:
        self.session = onnx_session(path, threads)
        self.executed_precision = _onnx_precision(path)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def input_shape(self) -> tuple:
        return tuple(d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(None, {self.input_name: batch}))


def _onnx_precision(path: str | Path) -> str:
    """"fp32", or "int8 (fp32 fallback)" for a quantized graph: ONNX Runtime runs a convolution or matrix product
    whose inputs are dequantized (QDQ) or an integer operator in int8, everything else in fp32."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    computed = [node for node in graph.node if node.op_type in _ONNX_COMPUTE or node.op_type in _ONNX_INTEGER]
    quantized = [
        node for node in computed
        if node.op_type in _ONNX_INTEGER or all(producers.get(name) == "DequantizeLinear" for name in node.input[:2])
    ]
    return _quantized_name(len(quantized), len(computed), "fp32")


class OpenVINORunner:
    """Runs an OpenVINO IR (or ONNX file) on OpenVINO's CPU plugin.

    Threads are set like ONNX Runtime's (`INFERENCE_NUM_THREADS`), with the latency hint (one stream, one
    request at a time). The floating-point precision is `precision` ("fp32" or "bf16"), else the one the IR
    records (`onnx_to_openvino`), else fp32, always set explicitly: on CPUs with AVX512_BF16 or AMX OpenVINO
    would otherwise run fp32 models in bf16 (about 2x faster, and not fp32). Quantized (int8) layers run in
    int8 whatever the hint; it sets the precision of the layers around them. `executed_precision` reads back
    what the compiled model runs.
    """

    def __init__(self, path: str | Path, threads: int, precision: str | None = None) -> None:
        import openvino

        core = openvino.Core()
        self.model = core.read_model(str(path))
        if precision is not None and precision not in OPENVINO_HINTS:
            raise ValueError(f"OpenVINO runs models at {list(OPENVINO_HINTS)}; got precision {precision!r}.")
        recorded = ["runtime_options", "INFERENCE_PRECISION_HINT"]
        hint = OPENVINO_HINTS[precision] if precision else self.model.get_rt_info(recorded).astype(str) if self.model.has_rt_info(recorded) else "f32"
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        self.compiled = core.compile_model(self.model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    @property
    def executed_precision(self) -> str:
        """What runs: "fp32" or "bf16" as compiled (the compiled model's `INFERENCE_PRECISION_HINT`, which the CPU
        plugin lowers to what the CPU supports), or "int8 (fp32 fallback)" when convolutions or matrix products run
        in int8 and the others at the compiled float precision ("int8" when none is left in float)."""
        floating = _PRECISION_NAMES.get(self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(), "fp32")
        layers = [op.get_rt_info() for op in self.compiled.get_runtime_model().get_ordered_ops()]
        computed = [_PRECISION_NAMES.get(info["runtimePrecision"].astype(str)) for info in layers if info["layerType"].astype(str) in _COMPUTE_LAYERS]
        return _quantized_name(computed.count("int8"), len(computed), floating)

    @property
    def input_shape(self) -> tuple:
        return tuple(d.get_length() if d.is_static else None for d in self.model.inputs[0].get_partial_shape())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: batch})[0])

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        results = self.request.infer({0: batch})
        return [np.array(results[index]) for index in range(len(self.compiled.outputs))]


def _quantized_name(int8_layers: int, compute_layers: int, floating: str) -> str:
    if not int8_layers:
        return floating
    return "int8" if int8_layers == compute_layers else f"int8 ({floating} fallback)"


class LiteRTRunner:
    """Runs a `.tflite` file on the LiteRT interpreter (XNNPACK), resizing its input to each batch shape."""

    def __init__(self, path: str | Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()
        self.shape: tuple[int, ...] | None = None

    @property
    def executed_precision(self) -> str:
        """"int8" for a full-integer model (int8 weights), else "fp32"."""
        weights = {detail["dtype"] for detail in self.interpreter.get_tensor_details()}
        return "int8" if np.dtype(np.int8) in weights else "fp32"

    @property
    def input_shape(self) -> tuple:
        signature = self.input.get("shape_signature", self.input["shape"])
        return tuple(int(d) if d > 0 else None for d in signature)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.outputs(batch)[0]

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.shape != self.shape:
            if tuple(batch.shape) != tuple(self.input["shape"]):
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], _to_input_type(batch, self.input))
        self.interpreter.invoke()
        return [_from_output_type(self.interpreter.get_tensor(detail["index"]), detail) for detail in self.output_details]


def _to_input_type(batch: np.ndarray, detail: dict) -> np.ndarray:
    """Quantizes a float batch for an integer input (a full-integer LiteRT model), else passes it on."""
    if detail["dtype"] == np.float32:
        return batch
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _from_output_type(output: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return output
    scale, zero_point = detail["quantization"]
    return (output.astype(np.float32) - zero_point) * scale


def open_runner(path: str | Path, threads: int = 2, runtime: str | None = None, precision: str | None = None):
    """A callable that runs an exported model file: ONNX Runtime for `.onnx` (OpenVINO with
    `runtime="openvino"`), OpenVINO for `.xml`, LiteRT for `.tflite`. `precision` ("fp32" or "bf16") is the
    float precision OpenVINO compiles for (default: the file's, else fp32); the other runtimes run fp32 only.
    Every runner's `executed_precision` names what runs ("fp32", "bf16", "int8 (fp32 fallback)", ...).

    Example:
        >>> runner = open_runner("runs/unet.xml", threads=2)
        >>> masks = runner(batch)
    """
    suffix = Path(path).suffix
    if suffix == ".xml" or (suffix == ".onnx" and runtime == "openvino"):
        return OpenVINORunner(path, threads, precision)
    if precision not in (None, "fp32"):
        raise ValueError(f"{precision} runs on OpenVINO only (an .xml file, or runtime='openvino'); got {str(path)!r}.")
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    if suffix == ".tflite":
        return LiteRTRunner(path, threads)
    raise ValueError(f"Cannot run {str(path)!r}: expected a .onnx, .xml (OpenVINO IR) or .tflite file.")
