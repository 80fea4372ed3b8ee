"""Deployment speed on nuclei: dense and pruned U-Nets x ONNX Runtime / OpenVINO x fp32 / int8, in one run.

Every file is timed in the same interleaved rounds (each round runs every file once, in turn), at the fixed
shape 1 x S x S, with the given threads; the run is repeated and each cell gives the median of the repeats'
medians and their spread (min-max). The dense model is also timed as `segprune export` wrote it before
issue 17 (dynamic height and width) on ONNX Runtime fp32: the baseline users have today. int8 models are
quantized by `segprune.runtime.quantize` on the training tiles (ONNX Runtime: static QDQ per channel;
OpenVINO: NNCF) and checked on the test split (mask agreement with fp32, Dice). The machine's fp32 peak
comes from a large NumPy matmul at the same thread count (benchmarks/cpu_peak.py).

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/deploy_nuclei.py \\
        --dense runs/demo/unet.keras --pruned runs/demo/sweep/models/oneshot-l1-0.25.keras --data nuclei

Mask agreement and Dice of the int8 models are always measured at the data's own tile size (1 x T x T, from a
quantization at that shape): at a larger fixed shape each test tile would be mirror-padded, and the nuclei U-Net's
fp32 Dice drops by 0.7 points from the padding alone. When --image-size differs from T, the timed int8 file is
quantized the same way at the timed shape (same calibration tiles, same per-channel weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from segprune import load_data
from segprune.cost import flops
from segprune.inference import pad_to_multiple
from segprune.metrics import evaluate
from segprune.models import load_model
from segprune.runtime.benchmark import achieved_gmacs, interleaved_timings, random_input
from segprune.runtime.export import export_model, open_runner
from segprune.runtime.quantize import QuantizationRefused, quantize

sys.path.insert(0, str(Path(__file__).parent))
from cpu_peak import matmul_gmacs

CELLS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
SUFFIX = {"onnxruntime": ".onnx", "openvino": ".xml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True)
    parser.add_argument("--pruned", nargs="*", default=[], help="pruned models (.keras), each a row")
    parser.add_argument("--data", default="nuclei")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="side of the fixed input (default: the training tiles' size; a larger one mirror-pads every tile, which changes its masks)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1.0, help="Dice points int8 may lose")
    arguments = parser.parse_args()

    data = load_data(arguments.data)
    tile = max(pad_to_multiple(next(iter(data.samples("train")))[1], 32).shape[:2])
    if arguments.image_size is None:
        arguments.image_size = tile
    size = arguments.image_size
    shape = (1, size, size)
    rows = [("dense", arguments.dense)] + [(Path(path).stem, path) for path in arguments.pruned]
    with tempfile.TemporaryDirectory(prefix="segprune-deploy-") as folder:
        folder = Path(folder)
        files, info = [], {}  # files: (row, runtime, precision, path); info[row]: macs, dice, quantization results
        for name, model_path in rows:
            model = load_model(model_path)
            info[name] = {"macs": flops(model, (size, size)).macs, "dice": evaluate(model, data).dice, "quantized": {}}
            if name == "dense":
                export_model(model, folder / "dense-dynamic.onnx", "onnx")
                files.append((name + " (dynamic export)", "onnxruntime", "fp32", folder / "dense-dynamic.onnx"))
                info[name + " (dynamic export)"] = info[name]
            for runtime, precision in CELLS:
                path = folder / f"{name}-{runtime}-{precision}{SUFFIX[runtime]}"
                if precision == "fp32":
                    export_model(model, path, "onnx" if runtime == "onnxruntime" else "openvino", input_shape=shape)
                else:
                    try:  # checked at the data's tile size, timed at `shape`
                        checked = quantize(model, data, runtime, out=path if size == tile else None, input_shape=(1, tile, tile), tolerance=arguments.tolerance)
                    except QuantizationRefused as refusal:
                        info[name]["quantized"][runtime] = refusal
                        continue
                    info[name]["quantized"][runtime] = checked
                    if size != tile:
                        quantize(model, data, runtime, out=path, input_shape=shape, tolerance=100.0)
                files.append((name, runtime, precision, path))
        peak_before = max(matmul_gmacs(4096, arguments.threads, 3))  # the best of before and after: load only lowers it
        runners = [open_runner(path, arguments.threads, runtime) for _, runtime, _, path in files]
        inputs = [random_input(runner.input_shape, 1, size) for runner in runners]
        repeat_medians = [[] for _ in files]
        for _ in range(arguments.repeats):
            for index, times in enumerate(interleaved_timings(runners, inputs, arguments.rounds, warmup=5)):
                repeat_medians[index].append(float(np.median(times)))
    peak = max(peak_before, *matmul_gmacs(4096, arguments.threads, 3))
    _print_table(files, repeat_medians, info, peak, arguments, tile)


def _print_table(files, repeat_medians, info, peak: float, arguments, tile: int) -> None:
    cells = {(row, runtime, precision): medians for (row, runtime, precision, _), medians in zip(files, repeat_medians)}
    names = list(dict.fromkeys(row for row, *_ in files))
    print(
        f"\n1x{arguments.image_size}x{arguments.image_size}, {arguments.threads} threads; median of {arguments.repeats} repeats' "
        f"medians ({arguments.rounds} interleaved rounds each), spread = min-max of the repeats; fixed-shape exports "
        f"unless said; measured fp32 peak {peak:.1f} GMAC/s (NumPy matmul 4096, same threads)\n"
    )
    header = ["model", "GMACs", "Dice fp32"] + [f"{runtime} {precision}" for runtime, precision in CELLS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        macs = info[name]["macs"]
        line = [name, f"{macs / 1e9:.2f}", f"{info[name]['dice']:.4f}"]
        for runtime, precision in CELLS:
            medians = cells.get((name, runtime, precision))
            quantized = info[name]["quantized"].get(runtime) if precision == "int8" else None
            if medians is None:
                line.append("refused (Dice)" if isinstance(quantized, QuantizationRefused) else "-")
                continue
            median = float(np.median(medians))
            text = f"{median:.2f} ms ({min(medians):.2f}-{max(medians):.2f}), {achieved_gmacs(macs, median):.0f} GMAC/s"
            if precision == "fp32":
                text += f" = {100 * achieved_gmacs(macs, median) / peak:.0f}% of peak"
            else:
                text += f"; agree {100 * quantized.mask_agreement:.2f}%, Dice {quantized.dice_quantized:.4f} (at {tile}x{tile})"
            line.append(text)
        print("| " + " | ".join(line) + " |")
    baseline = float(np.median(cells[("dense (dynamic export)", "onnxruntime", "fp32")]))
    print(f"\nspeed-up over the dense model as exported today (dynamic shape) on ONNX Runtime fp32 ({baseline:.2f} ms):")
    for name in names:
        for runtime, precision in CELLS:
            medians = cells.get((name, runtime, precision))
            if medians is not None:
                print(f"  {name:<28} {runtime:<12} {precision}: {baseline / float(np.median(medians)):5.2f}x")
    for name in names:
        for runtime, result in info[name]["quantized"].items():
            if isinstance(result, QuantizationRefused):
                print(f"  {name} {runtime} int8 refused: {result}")


if __name__ == "__main__":
    main()
