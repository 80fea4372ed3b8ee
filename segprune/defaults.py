"""The defaults the Python API and the command line share, in one place.

`segprune.prune`, `segprune.sparsify`, `SweepConfig`, `DistillConfig`, `TrainConfig` and the `segprune`
command's options all read their defaults here, so a script and a shell command given the same arguments
do the same thing (tests/test_defaults.py checks the parser against the signatures). The module imports
nothing, so the command line can read it while parsing, before any framework starts.
"""

from __future__ import annotations

# Fine-tuning after pruning: one-shot methods return the pruned model as it is unless asked; the methods
# that train anyway (regularised, searched) fine-tune this long.
ONESHOT_FINETUNE_EPOCHS = 0
FINETUNE_EPOCHS = 20

# Knowledge distillation from the dense model while fine-tuning: on, with the dense model's soft masks
# (softened by TEMPERATURE) weighing DISTILL_WEIGHT of the loss.
DISTILL = True
DISTILL_TEMPERATURE = 2.0
DISTILL_WEIGHT = 0.5

LEARNING_RATE = 1e-3  # peak Adam learning rate of training and fine-tuning
ROUND_TO = 8  # every pruned group keeps a multiple of this many channels
SEED = 0

# Regularised structured methods and searches.
REGULARISE_EPOCHS = 15
GREEDY_ITERATIONS = 10
SEARCH_CANDIDATES = 20  # random search
CANDIDATE_STEPS = 20  # short fine-tune steps per search candidate
THREADS = 2  # runtime threads for latency

SPARSIFY_EPOCHS = 30

# `segprune optimize` fine-tunes every candidate longer than `prune` does: it ships the result. On the demo's nuclei
# U-Net pruned by L1 to 1/4 of the MACs and distilled, 20 epochs lost 0.94 Dice points [0.81, 1.10] against dense
# (OpenVINO fp32, 4 test images, paired 95% interval) and 60 epochs 0.28 [-0.04, 0.63]: the intervals do not overlap.
# At the smallest model round_to 8 allows (0.097 of the MACs), OpenVINO int8, 60 epochs lost 0.93 [0.75, 1.16] and
# 100 epochs 0.36 [0.08, 0.76] (150: 0.33 [0.05, 0.57]; without distillation 60 epochs lost 1.24 [0.63, 2.07]): past
# 60 the small models keep gaining, past 100 no measurable gain on these images, at 50% more time.
OPTIMIZE_FINETUNE_EPOCHS = 100

# The sweep.
SWEEP_BUDGETS = (0.5, 0.25, 0.125)
SWEEP_FINETUNE_EPOCHS = 10
TOLERANCE = 1.0  # Dice points below dense that still count as "as good" for the balance point
