"""The paired loss line of prune and sparsify says which way the difference goes, and when there is none to tell."""

import numpy as np
import pytest

from segprune.cli._common import print_test_scores
from segprune.metrics import ConfusionMatrix, Evaluation


def _scores(wrong_pixels: list[int]) -> Evaluation:
    """Eight 10x10 images, each with a foreground half, `wrong_pixels[i]` foreground pixels of image i predicted as background."""
    matrix = ConfusionMatrix(2)
    for wrong in wrong_pixels:
        truth = np.zeros((10, 10), np.int64)
        truth[:5] = 1
        predicted = truth.copy()
        predicted.flat[:wrong] = 0
        matrix.update(truth, predicted)
    return Evaluation.from_matrix(matrix)


@pytest.mark.parametrize(("dense", "pruned", "expected"), [
    ([0] * 8, [10] * 8, "lost "),  # worse on every image
    ([10] * 8, [0] * 8, "gained "),  # better on every image
    ([0, 10] * 4, [10, 0] * 4, "(no measurable difference)"),  # better on half, worse on half
])
def test_the_loss_line_names_its_direction(dense, pruned, expected, capsys):
    print_test_scores(_scores(dense), _scores(pruned), "pruned")
    printed = " ".join(capsys.readouterr().out.split())  # as one line, whatever the console width
    assert expected in printed and "paired (95% bootstrap over the 8 test images)" in printed
    if expected == "gained ":
        assert "lost" not in printed and "gained -" not in printed
