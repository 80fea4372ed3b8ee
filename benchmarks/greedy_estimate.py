"""Greedy's first estimate of its candidates against the count it evaluates, and the total its counters show.

    .venv/bin/python benchmarks/greedy_estimate.py [--model unet.keras] [--target flops=0.25] [--candidate-steps 2]

Without --model the default U-Net is built untrained for the nuclei data (the count depends on widths and
costs; which proposal wins, and so the path, depends on the scores). Prints the plan, the count evaluated,
and the (done, expected) pair of every candidate.

Measured (2 cores shared with other jobs, default U-Net untrained, flops=0.25 at 256x256, 2 candidate steps,
798 s): planned 63 candidates in 16 steps, evaluated 45 in 15; the counters read 63 to 55 to the end (45/55).
That run's steps replayed through the estimate as it now is (a step whose proposals all meet the budget is the
last) read 63 to 57, then 45 at the last step. Before, greedy multiplied groups by steps: "about 170" for this
model (17 groups x 10 iterations).
"""

from __future__ import annotations

import argparse
import tempfile

import segprune
from segprune.data import load_data
from segprune.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained .keras model (default: the U-Net, untrained)")
    parser.add_argument("--target", default="flops=0.25")
    parser.add_argument("--candidate-steps", type=int, default=2)
    arguments = parser.parse_args()
    data = load_data("nuclei")
    model = segprune.load_model(arguments.model) if arguments.model else build_model("unet", data.num_classes, data.image_channels)
    plans, counters = [], []
    with tempfile.TemporaryDirectory() as folder:
        result = segprune.prune(
            model, "greedy", target=arguments.target, data=data, finetune_epochs=0, candidate_steps=arguments.candidate_steps,
            time_result=False, folder=folder, on_search_start=plans.append,
            on_candidate=lambda record, best: counters.append((record["done"], record["expected"])),
        )
    print(f"planned {plans[0]['expected']} candidates ({plans[0]['description']}); evaluated {result.search.candidates} "
          f"in {result.search.seconds:.0f} s")
    print("(done, expected):", counters)


if __name__ == "__main__":
    main()
