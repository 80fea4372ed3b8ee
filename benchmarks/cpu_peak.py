"""This CPU's peak GMAC/s per precision: computed from the CPU (segprune.runtime.peak), checked against matrix multiplies.

The computed peak is what `segprune benchmark` divides each model's achieved GMAC/s by. The check runs matrix
products on the kernels the runtimes segprune uses run: OpenVINO's oneDNN (MatMul by constant weights, compiled with
INFERENCE_PRECISION_HINT f32 or bf16; int8 as a MatMul of FakeQuantize'd operands, which OpenVINO runs as a u8 x s8
brgemm), ONNX Runtime's MLAS (MatMul fp32, MatMulInteger u8 x s8) and PyTorch's oneDNN (matmul on fp32 and bf16
tensors, `torch._int_mm` on int8). Not NumPy: its BLAS follows OPENBLAS_CORETYPE, which this kind of machine pins to
an older kernel (Haswell: half the AVX-512 rate). OpenVINO converts its fp32 input to bf16 or u8 in every call,
which PyTorch's bf16 and int8 tensors skip.

The products are small (a few ms each) and timed many times, best kept: on a shared machine a short run is often
uninterrupted, a long one seldom. Each precision is measured `--trials` times (each the best of `--runs` products
per shape); the line gives the median trial and the spread (lowest-highest). A busy machine lowers the measured
figures: the load average is printed before and after.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/cpu_peak.py --threads 1
    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/cpu_peak.py --threads 2 --json

With `--unet`, the dense default U-Net (the demo's: nuclei classes and channels, 1x256x256, untrained: latency does not
depend on the weights) is timed as deployed, interleaved per runtime: ONNX Runtime fp32, OpenVINO fp32, bf16 and int8
(NNCF on random calibration tiles: the graph, not the calibration, sets its speed), each with its achieved GMAC/s as
a share of the peak at the precision that ran.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from segprune.runtime.peak import PRECISIONS, detect_cpu

SHAPES = ((512, 512, 512), (512, 1024, 256), (1024, 1024, 1024))  # (M, K, N): M x K times K x N, M*K*N multiply-accumulates


def openvino_matmul(precision: str, shape: tuple[int, int, int], threads: int):
    """A callable running one M x K by K x N product on OpenVINO at `precision`, and the kernel OpenVINO chose."""
    import openvino
    import openvino.opset13 as ops

    rows, inner, columns = shape
    rng = np.random.default_rng(0)
    left, right = ops.parameter([rows, inner], np.float32), ops.constant(rng.random((inner, columns), dtype=np.float32) - 0.5)
    if precision == "int8":  # unsigned activations times signed weights: VNNI's vpdpbusd operand types
        left_node, right_node = _fake_quantize(left, 0.0, 2.55), _fake_quantize(right, -1.28, 1.27)
    else:
        left_node, right_node = left, right
    model = openvino.Model([ops.matmul(left_node, right_node, False, False)], [left])
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = openvino.Core().compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
    )
    request = compiled.create_infer_request()
    feed = {0: rng.random((rows, inner), dtype=np.float32)}
    kernels = [
        f"{op.get_rt_info()['primitiveType'].astype(str)} ({op.get_rt_info()['runtimePrecision'].astype(str)})"
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) in ("MatMul", "FullyConnected")
    ]
    return (lambda: request.infer(feed)), ", ".join(kernels)


def _fake_quantize(node, low: float, high: float):
    import openvino.opset13 as ops

    low_node, high_node = ops.constant(np.float32(low)), ops.constant(np.float32(high))
    return ops.fake_quantize(node, low_node, high_node, low_node, high_node, 256)


def onnxruntime_matmul(precision: str, shape: tuple[int, int, int], threads: int):
    """One product on ONNX Runtime: MatMul (fp32) or MatMulInteger (int8: u8 x s8 -> s32), weights constant."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rows, inner, columns = shape
    rng = np.random.default_rng(0)
    if precision == "int8":
        node, input_type, output_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        weight, feed = rng.integers(-128, 128, (inner, columns), dtype=np.int8), rng.integers(0, 256, (rows, inner), dtype=np.uint8)
    else:
        node, input_type, output_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        weight, feed = rng.random((inner, columns), dtype=np.float32), rng.random((rows, inner), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node(node, ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", input_type, [rows, inner])], [helper.make_tensor_value_info("y", output_type, [rows, columns])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return (lambda: session.run(None, {"x": feed})), f"MLAS {node}"


def torch_matmul(precision: str, shape: tuple[int, int, int], threads: int):
    """One product in PyTorch (oneDNN): fp32 or bf16 tensors, or int8 x int8 -> int32 (`torch._int_mm`)."""
    import torch

    torch.set_num_threads(threads)
    rows, inner, columns = shape
    generator = torch.Generator().manual_seed(0)
    if precision == "int8":
        left = torch.randint(0, 128, (rows, inner), dtype=torch.int8, generator=generator)
        right = torch.randint(-128, 128, (inner, columns), dtype=torch.int8, generator=generator)
        return (lambda: torch._int_mm(left, right)), "torch._int_mm"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    left, right = torch.rand(rows, inner, generator=generator).to(dtype), torch.rand(inner, columns, generator=generator).to(dtype)
    out = torch.empty(rows, columns, dtype=dtype)
    return (lambda: torch.matmul(left, right, out=out)), f"torch.matmul {dtype}"


def best_gmacs(run, macs: int, runs: int) -> float:
    """The best of `runs` timed calls, in GMAC/s, after two warm-up calls."""
    run(), run()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return macs / best / 1e9


def measure(runtime: str, precision: str, threads: int, trials: int, runs: int) -> dict:
    """Best GMAC/s over SHAPES, `trials` times, for one runtime at one precision."""
    build = {"openvino": openvino_matmul, "onnxruntime": onnxruntime_matmul, "torch": torch_matmul}[runtime]
    prepared = [(shape, *build(precision, shape, threads)) for shape in SHAPES]
    results = [max(best_gmacs(run, int(np.prod(shape)), runs) for shape, run, _ in prepared) for _ in range(trials)]
    return {"runtime": runtime, "precision": precision, "kernels": sorted({kernel for _, _, kernel in prepared}), "trials_gmacs": results}


def unet_shares(threads: int, rounds: int, image_size: int = 256) -> list[dict]:
    """The dense default U-Net on each runtime and precision: executed precision, median ms, GMAC/s, share of peak."""
    import tempfile
    from pathlib import Path

    from segprune.cost import flops
    from segprune.data import load_data
    from segprune.models import unet
    from segprune.runtime.benchmark import achieved_gmacs, interleaved_timings
    from segprune.runtime.export import export_model, open_runner
    from segprune.runtime.peak import peak_gmacs
    from segprune.runtime.quantize import quantize_openvino

    data = load_data("nuclei")
    model = unet(num_classes=data.num_classes, input_channels=data.image_channels)
    shape = (1, image_size, image_size, data.image_channels)
    macs = flops(model, (image_size, image_size)).macs
    rows = []
    with tempfile.TemporaryDirectory(prefix="segprune-peak-") as folder:
        onnx_path, xml_path, int8_path = Path(folder) / "unet.onnx", Path(folder) / "unet.xml", Path(folder) / "unet-int8.xml"
        export_model(model, onnx_path, "onnx", input_shape=shape)
        export_model(model, xml_path, "openvino", input_shape=shape)
        calibration = [np.random.default_rng(seed).random(shape, dtype=np.float32) for seed in range(4)]
        quantize_openvino(onnx_path, int8_path, calibration)
        settings = [("onnxruntime", "fp32", onnx_path, None)] + [
            ("openvino", name, path, precision)
            for precision in ("fp32", "bf16")
            for name, path in ((precision, xml_path), (f"int8, {precision} around", int8_path))
        ]
        runners = [open_runner(path, threads, runtime, precision) for runtime, _, path, precision in settings]
        feed = np.random.default_rng(0).random(shape, dtype=np.float32)
        timings = interleaved_timings(runners, [feed] * len(runners), rounds)  # all six under the same noise
    for (runtime, asked, _, _), runner, times in zip(settings, runners, timings):
        median, best = float(np.median(times)), min(times)
        peak = peak_gmacs(runner.executed_precision, threads)
        rows.append({"runtime": runtime, "asked": asked, "ran": runner.executed_precision, "median_ms": median, "best_ms": best,
                     "gmacs": achieved_gmacs(macs, median), "best_gmacs": achieved_gmacs(macs, best), "peak_gmacs": peak, "macs": macs})
    return rows


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--unet", action="store_true", help="also time the dense default U-Net per runtime and precision")
    parser.add_argument("--unet-rounds", type=int, default=30)
    arguments = parser.parse_args()
    cpu = detect_cpu()
    load_before = os.getloadavg()
    measured = [
        measure(runtime, precision, arguments.threads, arguments.trials, arguments.runs)
        for runtime in ("openvino", "onnxruntime", "torch")
        for precision in PRECISIONS
        if cpu.supports(precision) and (runtime, precision) != ("onnxruntime", "bf16") and (runtime != "torch" or _has_torch())
    ]
    unet = unet_shares(arguments.threads, arguments.unet_rounds) if arguments.unet else []
    load_after = os.getloadavg()
    for row in measured:
        peak = cpu.peak_gmacs(row["precision"], arguments.threads)
        row.update(computed_gmacs=peak, median_gmacs=float(np.median(row["trials_gmacs"])), share_of_peak=max(row["trials_gmacs"]) / peak)
    if arguments.json:
        computed = {precision: cpu.peak_gmacs(precision, arguments.threads) for precision in PRECISIONS}
        print(json.dumps({"cpu": cpu.describe(), "threads": arguments.threads, "computed_gmacs": computed, "measured": measured,
                          "unet": unet, "load_before": load_before, "load_after": load_after}))
        return
    print(f"{cpu.describe()}; {arguments.threads} thread(s); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for precision in PRECISIONS:
        per_cycle = cpu.macs_per_cycle(precision)
        if per_cycle is None:
            print(f"  {precision:>4}: no instructions for it on this CPU")
            continue
        print(f"  {precision:>4}: computed peak {cpu.peak_gmacs(precision, arguments.threads):7.1f} GMAC/s ({per_cycle} MACs/cycle/core)")
    print(f"measured: best of {arguments.runs} products per trial over {len(SHAPES)} shapes, {arguments.trials} trials (median, lowest-highest)")
    for row in measured:
        low, high = min(row["trials_gmacs"]), max(row["trials_gmacs"])
        print(
            f"  {row['runtime']:>11} {row['precision']:>4}: {row['median_gmacs']:7.1f} GMAC/s ({low:.1f}-{high:.1f}), best "
            f"{100 * row['share_of_peak']:5.1f}% of computed; {', '.join(row['kernels'])}"
        )
    if unet:
        print(f"dense default U-Net ({unet[0]['macs'] / 1e9:.2f} GMACs), 1x256x256, {arguments.threads} thread(s), {arguments.unet_rounds} "
              "interleaved rounds; median (best) ms, GMAC/s and share of the peak at the precision that ran:")
    for row in unet:
        peak = row["peak_gmacs"] or float("nan")
        print(
            f"  {row['runtime']:>11} {row['asked']:<18} ran {row['ran']:<20} {row['median_ms']:7.2f} ({row['best_ms']:6.2f}) ms  "
            f"{row['gmacs']:6.1f} ({row['best_gmacs']:6.1f}) GMAC/s  {100 * row['gmacs'] / peak:5.1f}% ({100 * row['best_gmacs'] / peak:5.1f}%) "
            f"of {peak:.0f}"
        )


if __name__ == "__main__":
    main()
