"""`segprune prune` end to end on the nuclei tiles, under whichever Keras backend the tests run on."""

import keras

from segprune.cli import main
from segprune.cost import flops
from segprune.models import unet
from tests.graph.harness import built_with_numpy_weights


def test_prune_l1_to_half_the_macs_and_finetune_one_epoch_on_nuclei(nuclei_path, tmp_path):
    source, out = tmp_path / "unet.keras", tmp_path / "pruned.keras"
    dense = built_with_numpy_weights(lambda: unet(num_classes=2, input_channels=1, base_filters=16, depth=2))
    dense.save(source)
    arguments = ["prune", str(source), "--method", "l1", "--target", "flops=0.5", "--data", str(nuclei_path),
                 "--finetune-epochs", "1", "--image-size", "64", "--out", str(out)]
    assert main(arguments) == 0
    pruned = keras.saving.load_model(out, compile=False)
    fraction = flops(pruned, (64, 64)).macs / flops(dense, (64, 64)).macs
    assert 0.3 < fraction <= 0.5
    assert pruned.output_shape == dense.output_shape
