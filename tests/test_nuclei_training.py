"""Training learns on real data: a few epochs on the shipped nuclei tiles beat both trivial answers.

The 40-epoch accuracy bar (test Dice >= 0.93 with the default U-Net) is benchmarks/nuclei_acceptance.py.
"""

import keras
import numpy as np
import pytest

from segprune import TrainConfig, evaluate, train
from segprune.data import BatchConfig, load_data
from segprune.models import unet


@pytest.mark.slow
def test_a_few_epochs_on_nuclei_patches_beat_the_untrained_model_and_the_all_foreground_answer():
    data = load_data("nuclei")
    share = np.mean([np.mean(mask == 1) for _, _, mask in data.samples("val")])
    all_foreground = 2 * share / (1 + share)  # Dice of calling every pixel a nucleus
    keras.utils.set_random_seed(0)
    model = unet(num_classes=2, input_channels=1, base_filters=8, depth=2)
    untrained = evaluate(model, data, "val").dice
    config = TrainConfig(learning_rate=3e-3, batches=BatchConfig(batch_size=8, image_size=64, samples_per_epoch=256))
    result = train(model, data, epochs=5, config=config)
    assert result.best_val_dice > max(untrained, all_foreground) + 0.3, (result.best_val_dice, untrained, all_foreground)
    assert result.best_val_dice >= 0.85
    assert evaluate(model, data, "test").dice >= 0.85, "the held-out tiles are segmented as well as the validation ones"
