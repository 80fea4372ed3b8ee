"""`segprune.train` runs under a tf.distribute strategy and under JAX's DataParallel with no code of ours in the loop
(2 virtual CPU devices each).

TensorFlow and JAX fix their devices when they start, so each check runs in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from segprune.data import BatchConfig, synthetic_dataset
    from segprune.models import unet
    from segprune.training import TrainConfig, train
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=32, channels=1)
    with strategy.scope():
        model = unet(num_classes=data.num_classes, input_channels=1, base_filters=8, depth=1)
        before = [w.numpy().copy() for w in model.trainable_weights]
        result = train(model, data, epochs=1, config=TrainConfig(batches=BatchConfig(batch_size=4, image_size=32)))
    changed = any(abs(b - w.numpy()).max() > 0 for b, w in zip(before, model.trainable_weights))
    print(strategy.num_replicas_in_sync, type(model.trainable_weights[0].value).__name__, changed, len(result.history))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_train_runs_under_a_mirrored_strategy_on_two_virtual_cpus():
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    finished = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    replicas, variable, changed, epochs = finished.stdout.split()[-4:]
    assert (replicas, variable, changed, epochs) == ("2", "MirroredVariable", "True", "1")


JAX_SCRIPT = textwrap.dedent(
    """
    import jax
    import keras
    from segprune.data import BatchConfig, synthetic_dataset
    from segprune.models import unet
    from segprune.training import TrainConfig, train
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices("cpu")))
    data = synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=32, channels=1)
    model = unet(num_classes=data.num_classes, input_channels=1, base_filters=8, depth=1)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    result = train(model, data, epochs=1, config=TrainConfig(batches=BatchConfig(batch_size=4, image_size=32)))
    changed = any(abs(b - keras.ops.convert_to_numpy(w)).max() > 0 for b, w in zip(before, model.trainable_weights))
    devices = len(model.trainable_weights[0].value.sharding.device_set)
    print(len(jax.devices()), devices, changed, len(result.history))
    """
)


@pytest.mark.slow
def test_train_runs_data_parallel_under_jax_on_two_virtual_cpus():
    pytest.importorskip("jax")
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KERAS_BACKEND": "jax",
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    finished = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    devices, replicated_on, changed, epochs = finished.stdout.split()[-4:]
    assert (devices, replicated_on, changed, epochs) == ("2", "2", "True", "1")
