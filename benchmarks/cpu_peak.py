"""This machine's fp32 peak in GMAC/s, measured: a large float32 matrix multiply in NumPy (its BLAS).

A model's achieved GMAC/s (`segprune benchmark` prints it) over this figure says how close to the limit a
runtime runs it. BLAS threads are capped with threadpoolctl to the thread count being compared.

    flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/cpu_peak.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def matmul_gmacs(size: int, threads: int, repeats: int) -> list[float]:
    """GMAC/s of `repeats` (size x size) @ (size x size) float32 products (size**3 multiply-accumulates each)."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((size, size), dtype=np.float32)
    right = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), np.float32)
    rates = []
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(left, right, out=out)  # warm-up: page in, spin up the threads
        for _ in range(repeats):
            started = time.perf_counter()
            np.matmul(left, right, out=out)
            rates.append(size**3 / (time.perf_counter() - started) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    rows = []
    for size in (int(value) for value in arguments.sizes.split(",")):
        rates = matmul_gmacs(size, arguments.threads, arguments.repeats)
        rows.append({"size": size, "threads": arguments.threads, "best_gmacs": max(rates), "median_gmacs": float(np.median(rates))})
    peak = max(row["best_gmacs"] for row in rows)
    if arguments.json:
        print(json.dumps({"peak_gmacs": peak, "rows": rows}))
        return
    blas = ", ".join(f"{info['internal_api']} {info['version']} ({info.get('architecture', '?')})" for info in threadpool_info() if info["user_api"] == "blas")
    print(f"fp32 matrix multiply, {arguments.threads} thread(s), {blas}; GMAC/s = size^3 / seconds / 1e9")
    for row in rows:
        print(f"  {row['size']:>5} x {row['size']:<5}  best {row['best_gmacs']:7.1f}  median {row['median_gmacs']:7.1f} GMAC/s")
    print(f"measured fp32 peak: {peak:.1f} GMAC/s ({2 * peak:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
