"""Where an int8 U-Net spends its time: per-layer profiles on OpenVINO and ONNX Runtime, and the share of the int8 peak.

For a dense U-Net and its L1-pruned copies (one per --budgets fraction of the MACs, channel counts rounded to
each --round-to), quantized to int8 by `segprune.runtime.quantize` (OpenVINO: NNCF; ONNX Runtime: static QDQ,
per channel) on the nuclei tiles, this prints:

* the latency of every int8 file, timed in interleaved rounds at a fixed shape (1 x S x S), the achieved
  GMAC/s (graph MACs / latency) and its share of this CPU's int8 peak (segprune.runtime.peak: VNNI MACs per
  cycle x cores x clock);
* OpenVINO's own per-layer counters (PERF_COUNT): time by executed kernel (`exec_type`, e.g. brgconv_avx512_core
  _vnni_I8 or a reference kernel) and by layer type, the convolutions' own GMAC/s, and the layers that run in
  float inside the int8 graph;
* ONNX Runtime's own profiler (enable_profiling): time by operator type.

Weights do not change the timing, only the calibration ranges: the U-Net is trained for --epochs on nuclei
first so that the int8 checks (Dice within 1 point) pass as they would for a user's model.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/int8_profile.py --image-size 256 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import keras
import numpy as np

from segprune import load_data, prune_channels
from segprune.cost import flops
from segprune.models import unet
from segprune.runtime.benchmark import achieved_gmacs, interleaved_timings, random_input
from segprune.runtime.export import open_runner
from segprune.runtime.peak import detect_cpu
from segprune.runtime.quantize import quantize
from segprune.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budgets", type=float, nargs="*", default=[0.25, 0.125], help="fractions of the dense MACs")
    parser.add_argument("--round-to", type=int, nargs="*", default=[8, 16, 32], help="channel multiples to compare")
    parser.add_argument("--epochs", type=int, default=3, help="nuclei training epochs before pruning (calibration ranges)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", nargs="*", default=["openvino", "onnxruntime"])
    parser.add_argument("--int8-input-conv", action="store_true",
                        help="also quantize each model with the convolutions that read the image in int8 (rows marked 'int8-in')")
    arguments = parser.parse_args()

    keras.utils.set_random_seed(0)
    data = load_data("nuclei")
    size = arguments.image_size
    dense = unet(num_classes=data.num_classes, input_channels=data.image_channels)
    train(dense, data, arguments.epochs, TrainConfig())
    dense_macs = flops(dense, (size, size)).macs
    models = {"dense": dense}
    for budget in arguments.budgets:
        for multiple in arguments.round_to:
            try:
                models[f"l1-{budget:g}-r{multiple}"] = prune_channels(dense, target=f"flops={budget}", round_to=multiple)
            except ValueError as error:  # a multiple wider than the narrowest layers may not reach the budget
                print(f"l1 {budget:g} round_to {multiple}: {error}")
    cpu = detect_cpu()
    peak = cpu.peak_gmacs("int8", arguments.threads)
    print(f"CPU: {cpu.describe()}; int8 peak at {arguments.threads} threads: {peak:.0f} GMAC/s")
    shape = f"1x{size}x{size}"

    with tempfile.TemporaryDirectory(prefix="int8-profile-") as folder:
        for runtime in arguments.runtimes:
            suffix = {"openvino": ".xml", "onnxruntime": ".onnx"}[runtime]
            paths, macs = {}, {}
            variants = [(name, model, True) for name, model in models.items()]
            if arguments.int8_input_conv:
                variants += [(f"{name}-int8-in", model, False) for name, model in models.items()]
            for name, model, float_input in variants:
                path = Path(folder) / f"{name}-{runtime}-int8{suffix}"
                result = quantize(model, data, runtime, out=path, input_shape=shape, threads=arguments.threads, tolerance=100.0,
                                  float_input_convs=float_input)
                paths[name], macs[name] = path, flops(model, (size, size)).macs
                print(f"{runtime} {name}: int8 Dice drop {result.dice_drop_points:+.2f} points (test split, {data.name})")
            _time(runtime, paths, macs, dense_macs, peak, size, arguments)
            for name, path in paths.items():
                profile = _openvino_profile(path, size, arguments.threads) if runtime == "openvino" else _ort_profile(path, size, arguments.threads, folder)
                _print_profile(runtime, name, profile, macs[name], peak)


def _time(runtime, paths, macs, dense_macs, peak, size, arguments) -> None:
    names = list(paths)
    runners = [open_runner(paths[name], threads=arguments.threads, precision="fp32") for name in names]
    batch = random_input((None, size, size, 1), 1, size)
    repeats = [interleaved_timings(runners, [batch] * len(runners), rounds=arguments.rounds) for _ in range(arguments.repeats)]
    print(f"\n{runtime} int8 at 1x{size}x{size}, {arguments.threads} threads, {arguments.repeats} repeats x {arguments.rounds} rounds (median, min-max of repeat medians)")
    print(f"{'model':>16} {'MACs':>6} {'ms':>7} {'spread':>13} {'GMAC/s':>7} {'peak share':>10}")
    for index, name in enumerate(names):
        medians = [float(np.median(timings[index])) for timings in repeats]
        ms = float(np.median(medians))
        gmacs = achieved_gmacs(macs[name], ms)
        print(f"{name:>16} {macs[name] / dense_macs:6.3f} {ms:7.2f} {min(medians):6.2f}-{max(medians):<6.2f} {gmacs:7.1f} {gmacs / peak:10.1%}")


def _openvino_profile(path: Path, size: int, threads: int, runs: int = 50) -> dict:
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU",
        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True},
    )
    request = compiled.create_infer_request()
    batch = random_input((None, size, size, 1), 1, size)
    for _ in range(5):
        request.infer({0: batch})
    by_kernel, by_type, by_layer, conv_us, float_layers = defaultdict(float), defaultdict(float), defaultdict(float), 0.0, []
    kernel_of_type, conv_time = defaultdict(set), defaultdict(float)
    for _ in range(runs):
        request.infer({0: batch})
        for info in request.get_profiling_info():
            microseconds = info.real_time.total_seconds() * 1e6 / runs
            by_kernel[info.exec_type] += microseconds
            by_type[info.node_type] += microseconds
            by_layer[f"{info.node_name} [{info.node_type}, {info.exec_type}]"] += microseconds
            kernel_of_type[info.exec_type].add(info.node_type)
            if info.node_type == "Convolution":
                conv_us += microseconds
                conv_time[(info.node_name, info.exec_type)] += microseconds
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in ("Convolution", "Deconvolution", "FullyConnected", "MatMul") and rt["runtimePrecision"].astype(str) != "u8" and rt["runtimePrecision"].astype(str) != "i8":
            float_layers.append(f"{op.get_friendly_name()} ({rt['layerType'].astype(str)}, {rt['runtimePrecision'].astype(str)})")
    convolutions = _convolution_shapes(path)
    layers = [
        {"name": name, "kernel": kernel, "us": us, **convolutions[name]}
        for (name, kernel), us in conv_time.items() if name in convolutions
    ]
    return {"by_kernel": dict(by_kernel), "by_type": dict(by_type), "by_layer": dict(by_layer), "conv_us": conv_us, "float_layers": float_layers,
            "kernel_types": {kernel: sorted(types) for kernel, types in kernel_of_type.items()}, "convolutions": layers}


def _convolution_shapes(path: Path) -> dict[str, dict]:
    """Every convolution of the IR by name: input and output channels, kernel, output size and MACs (from the graph)."""
    import openvino

    shapes = {}
    for op in openvino.Core().read_model(str(path)).get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        c_out, c_in, k_h, k_w = (int(v) for v in op.input(1).get_partial_shape().to_shape())
        _, _, height, width = (int(v) for v in op.get_output_partial_shape(0).to_shape())
        shapes[op.get_friendly_name()] = {"c_in": c_in, "c_out": c_out, "window": f"{k_h}x{k_w}", "size": f"{height}x{width}",
                                          "macs": height * width * c_out * c_in * k_h * k_w}
    return shapes


def _ort_profile(path: Path, size: int, threads: int, folder: str, runs: int = 50) -> dict:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(folder) / path.stem)
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    batch = random_input((None, size, size, 1), 1, size)
    name = session.get_inputs()[0].name
    for _ in range(runs):
        session.run(None, {name: batch})
    trace = json.loads(Path(session.end_profiling()).read_text())
    by_type = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_type[event["args"]["op_name"]] += event["dur"] / runs
    conv_us = sum(us for op, us in by_type.items() if "Conv" in op)
    return {"by_kernel": {}, "by_type": dict(by_type), "by_layer": {}, "conv_us": conv_us, "float_layers": []}


def _print_profile(runtime: str, name: str, profile: dict, macs: int, peak: float) -> None:
    total = sum(profile["by_type"].values())
    print(f"\n{runtime} {name}: {total / 1e3:.2f} ms in layers; convolutions {profile['conv_us'] / 1e3:.2f} ms "
          f"= {achieved_gmacs(macs, profile['conv_us'] / 1e3):.0f} GMAC/s on the graph's MACs ({achieved_gmacs(macs, profile['conv_us'] / 1e3) / peak:.0%} of peak)")
    for title, table in (("by layer type", profile["by_type"]), ("by kernel", profile["by_kernel"]), ("slowest layers", profile["by_layer"])):
        rows = sorted(table.items(), key=lambda item: -item[1])[:8]
        if rows:
            print(f"  {title}: " + ", ".join(f"{key} {us / total:.0%}" for key, us in rows if us > 0))
    if profile.get("kernel_types"):
        print("  kernels by layer type: " + "; ".join(f"{kernel}: {', '.join(types)}" for kernel, types in sorted(profile["kernel_types"].items())))
    if profile.get("convolutions"):
        print(f"  convolutions, slowest first ({'name':>56} {'kernel':>22} {'in':>4} {'out':>4} {'k':>3} {'size':>7} {'MMACs':>7} {'us':>7} {'GMAC/s':>7})")
        for layer in sorted(profile["convolutions"], key=lambda item: -item["us"])[:14]:
            gmacs = layer["macs"] / layer["us"] / 1e3
            print(f"    {layer['name'][-56:]:>56} {layer['kernel']:>22} {layer['c_in']:4d} {layer['c_out']:4d} {layer['window']:>3} "
                  f"{layer['size']:>7} {layer['macs'] / 1e6:7.1f} {layer['us']:7.0f} {gmacs:7.1f}")
    if profile["float_layers"]:
        print(f"  compute layers not in int8: {len(profile['float_layers'])}: " + "; ".join(profile["float_layers"][:6]))


if __name__ == "__main__":
    main()
